"""Small files named for what they hold: no Python source file is over 500 lines."""

from __future__ import annotations

from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
FOLDERS = ("domain", "services", "projections", "infra", "contracts", "clients", "tests", "bench")
MAX_LINES = 500


def oversized(root: Path, folders: tuple[str, ...] = FOLDERS) -> dict[str, int]:
    """Each .py file under `folders` of `root` that has more than MAX_LINES lines: its count."""
    found: dict[str, int] = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                found[str(path.relative_to(root))] = lines
    return found


def test_no_source_file_is_over_500_lines() -> None:
    assert all((PROJECT / folder).is_dir() for folder in FOLDERS)
    assert oversized(PROJECT) == {}, "split these by what they hold"


def test_a_file_over_the_limit_is_found(tmp_path: Path) -> None:
    (tmp_path / "infra" / "deep").mkdir(parents=True)
    (tmp_path / "infra" / "deep" / "big.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "infra" / "small.py").write_text("x = 1\n" * MAX_LINES)
    (tmp_path / "infra" / "notes.txt").write_text("x\n" * (MAX_LINES + 1))
    assert oversized(tmp_path, ("infra",)) == {"infra/deep/big.py": MAX_LINES + 1}
