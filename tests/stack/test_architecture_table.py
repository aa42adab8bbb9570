"""docs/ARCHITECTURE.md's folder table matches the tree: every folder it names exists, every
top-level folder and every runnable under services/ has a row, and every file it names in
backquotes under a folder's row exists there."""

from __future__ import annotations

import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
TEXT = (PROJECT / "docs" / "ARCHITECTURE.md").read_text()
ROWS = dict(re.findall(r"^\| `([^`]+)` \| (.+) \|$", TEXT, flags=re.M))
TOP_LEVEL = {
    "domain",
    "services",
    "projections",
    "infra",
    "contracts",
    "clients",
    "deploy",
    "bench",
    "tests",
}


def test_every_folder_the_table_names_exists() -> None:
    assert ROWS, "no folder table found"
    missing = [folder for folder in ROWS if not (PROJECT / folder).exists()]
    assert not missing, missing


def test_every_top_level_folder_and_runnable_has_a_row() -> None:
    named = {folder.strip("/").split("/")[0] for folder in ROWS}
    assert TOP_LEVEL - named == set() or (
        TOP_LEVEL - named == {"services"} and any(f.startswith("services/") for f in ROWS)
    ), TOP_LEVEL - named
    runnables = {p.name for p in (PROJECT / "services").iterdir() if (p / "__init__.py").exists()}
    rows = {folder.strip("/").split("/")[1] for folder in ROWS if folder.startswith("services/")}
    assert runnables - rows == set(), runnables - rows


def test_the_files_a_row_names_are_in_its_folder() -> None:
    wrong = []
    for folder, holds in ROWS.items():
        base = PROJECT / folder
        if not base.is_dir():
            continue
        for name in re.findall(r"`([A-Za-z0-9_./-]+\.(?:py|sh|json|xml|toml))`", holds):
            # A path from the project's root (`docs/openapi.json`) is not the folder's.
            if "/" in name and (PROJECT / name).exists():
                continue
            if not (base / name).exists() and not list(base.rglob(Path(name).name)):
                wrong.append(f"{folder}: {name}")
    assert not wrong, wrong
