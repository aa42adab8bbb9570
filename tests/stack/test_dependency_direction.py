"""Dependencies point inward (docs/ARCHITECTURE.md), checked on every module's imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
OURS = {"domain", "infra", "projections", "services", "bench", "tests"}
# What each layer may import of ours.
ALLOWED = {
    "domain": {"domain"},
    "infra": {"domain", "infra"},
    "projections": {"domain", "infra", "projections"},
    "services": {"domain", "infra", "projections", "services"},
}
# The domain does no I/O: besides the standard library, only these third-party modules.
DOMAIN_THIRD_PARTY = {"pydantic", "eventsourcing.domain"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(layer: str) -> list[Path]:
    return sorted((PROJECT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_what_is_further_in(layer: str) -> None:
    assert _modules(layer), f"no modules found in {layer}/"
    wrong = {
        f"{path.relative_to(PROJECT)} imports {name}"
        for path in _modules(layer)
        for name in _imports(path)
        if name.split(".")[0] in OURS and name.split(".")[0] not in ALLOWED[layer]
    }
    assert not wrong, sorted(wrong)


def test_the_domain_imports_no_io_library() -> None:
    wrong = {
        f"{path.relative_to(PROJECT)} imports {name}"
        for path in _modules("domain")
        for name in _imports(path)
        if name.split(".")[0] not in OURS
        and name.split(".")[0] not in sys.stdlib_module_names
        and not any(
            name == allowed or name.startswith(allowed + ".") for allowed in DOMAIN_THIRD_PARTY
        )
    }
    assert not wrong, sorted(wrong)


# The payment side reads the read models: it never opens the ledger's event store.
PAYMENTS_FORBIDDEN = ("infra.ledger_application", "infra.event_store", "services.ledger")


def _module_file(name: str) -> Path | None:
    base = PROJECT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _our_imports(path: Path) -> set[str]:
    """Modules of ours that `path` imports (a `from package import module` names the module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] in OURS and _module_file(n) is not None}


def _reachable(start: str) -> dict[str, str]:
    """Every module of ours `start` imports, directly or through others: name -> importer."""
    seen: dict[str, str] = {start: start}
    todo = [start]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        assert path is not None, name
        for imported in _our_imports(path):
            if imported not in seen:
                seen[imported] = name
                todo.append(imported)
    return seen


def _is(name: str, module: str) -> bool:
    return name == module or name.startswith(module + ".")


def test_payments_never_opens_the_ledgers_event_store() -> None:
    modules = [
        ".".join(path.relative_to(PROJECT).with_suffix("").parts)
        for path in sorted((PROJECT / "services" / "payments").glob("*.py"))
    ]
    assert "services.payments.consumer" in modules and "services.payments.http" in modules
    direct = {
        f"{module} imports {name}"
        for module in modules
        for name in _imports(_module_file(module) or Path())
        if _is(name, "eventsourcing") or any(_is(name, f) for f in PAYMENTS_FORBIDDEN)
    }
    assert not direct, sorted(direct)
    through = {
        f"{module} reaches {name} (imported by {importer})"
        for module in modules
        for name, importer in _reachable(module).items()
        if any(_is(name, f) for f in PAYMENTS_FORBIDDEN)
    }
    assert not through, sorted(through)
