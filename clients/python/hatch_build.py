"""Ships the ledger's domain contract modules (`domain-modules` in pyproject.toml) inside the
client's distribution, taken at build time from the repository's `domain/`, so no copy is kept
in the repository. An sdist carries them in its own `domain/`, so a wheel builds from it too."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class DomainContracts(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        # An unpacked sdist has its own copy; a checkout takes the repository's.
        source = root / "domain"
        if not source.is_dir():
            source = root.parent.parent / "domain"
        for module in self.config["domain-modules"]:
            path = source / f"{module}.py"
            if not path.is_file():
                raise FileNotFoundError(f"domain module {module!r} not found at {path}")
            build_data["force_include"][str(path)] = f"domain/{module}.py"
        # Typed, like the client (PEP 561): an empty marker, made for the build.
        self._scratch = tempfile.TemporaryDirectory()
        marker = Path(self._scratch.name) / "py.typed"
        marker.touch()
        build_data["force_include"][str(marker)] = "domain/py.typed"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        self._scratch.cleanup()
