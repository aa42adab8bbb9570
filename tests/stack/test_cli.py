"""Every `credits` command answers `--help`."""

from __future__ import annotations

import pytest

from services.cli.main import build_parser

COMMANDS = [
    [],
    ["run"],
    ["topics"],
    ["topics", "create"],
    ["projections"],
    ["projections", "status"],
    ["projections", "rebuild"],
    ["account"],
    ["account", "show"],
    ["send"],
    ["demo"],
]


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(["credits", *w]))
def test_every_command_has_help(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([*words, "--help"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: credits {' '.join(words)}".rstrip())


def test_run_rejects_an_unknown_component(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["run", "nonsense"])

    assert exited.value.code == 2
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err
