"""The repository stands on its own: the design it cites is docs/DESIGN.md, and no tracked text
points outside the repository or at work-tracking numbers a newcomer cannot follow."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
DESIGN = PROJECT / "docs" / "DESIGN.md"
TEXT_SUFFIXES = {".md", ".py", ".toml", ".yaml", ".yml", ".json", ".sh", ".java", ".txt"}
TEXT_NAMES = {"Makefile", "Dockerfile"}
# Written so that this file does not match itself: a path above the repository, a design
# file kept outside it, and numbered references to a work tracker.
OUTSIDE = re.compile(r"\.\./shared|shared[/]DESIGN|\bissue \d+|\bissue [#]", re.IGNORECASE)
SECTIONS = [
    "1. What it is, and for whom",
    "2. Public contracts",
    "3. Domain rules",
    "4. Catalog",
    "5. Architecture",
    "6. Guarantees",
    "7. Performance",
    "8. Pitfalls already known",
]
SUBSECTIONS = ["2.1", "2.2", "2.3", "2.4", "2.5", "2.6"]
# "DESIGN §2.2", or a range such as "DESIGN §2.1-2.3" (with a hyphen or an en dash, U+2013).
CITATION = re.compile(r"DESIGN §(\d+(?:\.\d+)?)(?:[\u2013-](\d+(?:\.\d+)?))?")


def _tracked_text_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=PROJECT, capture_output=True, check=True, timeout=30
        ).stdout.decode()
        paths = [PROJECT / name for name in listed.split("\0") if name]
    except (OSError, subprocess.SubprocessError):
        # No git (an image, an export): every file outside local state and hidden folders.
        paths = [
            p
            for p in PROJECT.rglob("*")
            if not any(part.startswith(".") for part in p.relative_to(PROJECT).parts)
        ]
    return sorted(
        p for p in paths if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES)
    )


def _headings() -> list[str]:
    return [line for line in DESIGN.read_text().splitlines() if line.startswith("#")]


def test_no_tracked_text_points_outside_the_repository() -> None:
    files = _tracked_text_files()
    assert len(files) > 100, "the file listing found too little to be the repository"
    found = [
        f"{path.relative_to(PROJECT)}:{number}: {line.strip()[:120]}"
        for path in files
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not found, "\n".join(found)


def test_the_design_has_its_eight_numbered_sections_in_order() -> None:
    assert DESIGN.is_file(), "docs/DESIGN.md is missing"
    numbered = [h[3:] for h in _headings() if re.match(r"## \d+\. ", h)]
    assert [n.split(" (")[0] for n in numbered] == SECTIONS
    subsections = [h.split()[1] for h in _headings() if re.match(r"### \d+\.\d+ ", h)]
    assert subsections == SUBSECTIONS


def test_every_design_citation_names_a_section_that_exists() -> None:
    sections = {h.split()[1].rstrip(".") for h in _headings() if re.match(r"##+ \d", h)}
    cited = {
        (str(path.relative_to(PROJECT)), number)
        for path in _tracked_text_files()
        for match in CITATION.finditer(path.read_text(errors="replace"))
        for number in match.groups()
        if number is not None
    }
    missing = sorted((where, number) for where, number in cited if number not in sections)
    assert not missing, missing
