"""Dependencies point inward (docs/ARCHITECTURE.md), checked on every module's imports."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
CLIENT_PROJECT = PROJECT / "clients" / "python"
OURS = {
    "domain",
    "infra",
    "projections",
    "services",
    "contracts",
    "credits_client",
    "bench",
    "tests",
}
# What each layer (a folder; a sub-folder's rule replaces its parent's) may import of ours: a
# package, or one module (and what is inside it).
ALLOWED: dict[str, set[str]] = {
    "domain": {"domain"},
    # The Kafka connection and client factories are the producer client's (it installs alone).
    "infra": {
        "domain",
        "infra",
        "credits_client.connection",
        "credits_client.kafka_clients",
        "credits_client.partitioning",
    },
    "projections": {"domain", "infra", "projections"},
    "services": {"domain", "infra", "projections", "services", "credits_client"},
    # `credits openapi` writes docs/openapi.json with the generator.
    "services/cli": {"domain", "infra", "projections", "services", "credits_client", "contracts"},
    # The generators document what the others define: the models, the topics and settings, the
    # DLQ codes, the CloudEvents' sources and types, the HTTP app's routes.
    "contracts": {
        "contracts",
        "domain",
        "credits_client",
        "infra.settings",
        "infra.dlq",
        "services.relay.cloud_events",
        "services.payments.payment_events",
        "services.api.app",
    },
}
# The domain does no I/O: besides the standard library, only these third-party modules.
DOMAIN_THIRD_PARTY = {"pydantic", "eventsourcing.domain"}


def _client_project() -> dict:
    return tomllib.loads((CLIENT_PROJECT / "pyproject.toml").read_text())


def _client_domain_modules() -> set[str]:
    """The domain modules the client's distribution ships (its build hook's list)."""
    modules = _client_project()["tool"]["hatch"]["build"]["hooks"]["custom"]["domain-modules"]
    return {"domain" if m == "__init__" else f"domain.{m}" for m in modules}


def _client_third_party() -> set[str]:
    """The import names of the client distribution's dependencies (`pydantic-settings>=2.7`
    imports as `pydantic_settings`)."""
    requirements = _client_project()["project"]["dependencies"]
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].replace("-", "_") for r in requirements}


def _is_within(name: str, allowed: str) -> bool:
    return name == allowed or name.startswith(allowed + ".")


def _module_path(module: str) -> Path:
    root = CLIENT_PROJECT if module.split(".")[0] == "credits_client" else PROJECT
    path = root / Path(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from domain import account` imports the module domain.account.
            submodules = (f"{node.module}.{alias.name}" for alias in node.names)
            names.update(name for name in submodules if _module_path(name).is_file())
    return names


def _modules(layer: str) -> list[Path]:
    """The layer's modules, but those of a sub-folder with a rule of its own."""
    inner = [other for other in ALLOWED if other.startswith(layer + "/")]
    return sorted(
        path
        for path in (PROJECT / layer).rglob("*.py")
        if not any(path.is_relative_to(PROJECT / other) for other in inner)
    )


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_each_layer_imports_only_what_is_further_in(layer: str) -> None:
    assert _modules(layer), f"no modules found in {layer}/"
    wrong = {
        f"{path.relative_to(PROJECT)} imports {name}"
        for path in _modules(layer)
        for name in _imports(path)
        if name.split(".")[0] in OURS
        and not any(_is_within(name, allowed) for allowed in ALLOWED[layer])
    }
    assert not wrong, sorted(wrong)


def test_the_client_imports_only_itself_the_domain_contracts_and_its_dependencies() -> None:
    """What the client's wheel holds is all it may import: itself, the domain modules its build
    ships (and they only each other), the standard library and its declared dependencies."""
    shipped = _client_domain_modules()
    third_party = _client_third_party()
    assert third_party == {"aiokafka", "pydantic", "pydantic_settings"}
    sources = {
        str(path.relative_to(PROJECT)): path for path in sorted(CLIENT_PROJECT.rglob("*.py"))
    }
    sources.pop("clients/python/hatch_build.py")  # the build's, not the package's
    assert any(name.endswith("/client.py") for name in sources), "no client modules found"
    sources |= {module: _module_path(module) for module in shipped}
    wrong = set()
    for source, path in sources.items():
        assert path.is_file(), f"{source}: no such module"
        for name in _imports(path):
            top = name.split(".")[0]
            if top == "credits_client" or top in sys.stdlib_module_names:
                continue
            if top == "domain":
                if name not in shipped:
                    wrong.add(f"{source} imports {name}, which the client's wheel does not ship")
            elif top in OURS or top not in third_party:
                wrong.add(f"{source} imports {name}")
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
