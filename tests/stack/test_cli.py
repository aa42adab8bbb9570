"""Every `credits` command answers `--help`."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from services.cli.main import build_parser


def _every_command(parser: argparse.ArgumentParser, words: list[str]) -> Iterator[list[str]]:
    """Every command and action the parser knows, found by walking it: a new one is checked
    without being listed here."""
    yield words
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _every_command(child, [*words, name])


COMMANDS = list(_every_command(build_parser(), []))


def test_the_walk_finds_the_commands_of_every_group() -> None:
    found = {" ".join(words) for words in COMMANDS}
    assert {"dlq list", "dlq show", "dlq replay", "reconcile", "keys revoke", "openapi"} <= found
    assert len(COMMANDS) >= 23


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
