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
