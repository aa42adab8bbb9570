"""`credits send` and `credits demo` through the real Kafka and a running ledger."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from infra.settings import Settings
from services.cli.demo import SCENARIO
from services.cli.main import main
from tests.client.conftest import account
from tests.ledger_harness import RunningLedger

pytestmark = pytest.mark.integration


@pytest.fixture
def send(
    topics: Settings,
    ledger: RunningLedger,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    logging_restored: None,
) -> Any:
    monkeypatch.setenv("CREDITS_TOPIC_PREFIX", topics.topic_prefix)
    monkeypatch.setenv("CREDITS_PG_DATABASE", topics.pg_database)

    async def run(command: dict[str, Any] | str | None) -> tuple[int, str, str]:
        if command is None:
            words = ["demo"]
        else:
            path = tmp_path / f"{uuid.uuid4().hex}.json"
            path.write_text(command if isinstance(command, str) else json.dumps(command))
            words = ["send", str(path)]
        code = await asyncio.to_thread(main, words)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


async def test_a_command_is_answered_and_sending_it_again_is_a_duplicate(send: Any) -> None:
    acct = account("cli")
    opened = {"type": "open_account", "command_id": "cli-open", "account_id": acct, "plan": "pro"}
    spend = {"type": "consume", "command_id": "cli-1", "account_id": acct, "action": "lookup"}

    assert (await send(opened))[0] == 0
    code, out, _ = await send(spend)
    again, out_again, _ = await send(spend)

    first, retry = json.loads(out), json.loads(out_again)
    assert (code, first["status"], first["command_id"]) == (0, "accepted", "cli-1")
    assert (again, retry["status"], retry["result"]) == (0, "duplicate", first["result"])


async def test_a_rejected_command_prints_its_error_and_exits_1(send: Any) -> None:
    acct = account("cli")
    code, out, _ = await send(
        {"type": "consume", "command_id": "x", "account_id": acct, "action": "lookup"}
    )

    reply = json.loads(out)
    assert (code, reply["status"], reply["error"]["code"]) == (1, "rejected", "unknown_account")


async def test_a_missing_command_id_is_generated_and_told(send: Any) -> None:
    acct = account("cli")
    code, out, err = await send({"type": "open_account", "account_id": acct, "plan": "pro"})

    generated = err.split()[1]
    assert err.startswith("command_id ") and "(generated)" in err
    assert (code, json.loads(out)["command_id"]) == (0, generated)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"type": "teleport", "command_id": "a", "account_id": "b"}', "invalid_command"),
        ("[1, 2]", "one JSON object"),
        ("{not json", "cannot read a JSON command"),
    ],
)
async def test_an_invalid_command_is_not_sent_and_exits_2(
    send: Any, text: str, message: str
) -> None:
    code, out, err = await send(text)

    assert (code, out) == (2, "")
    assert message in err


async def test_the_demo_runs_its_scenario_through_kafka(send: Any) -> None:
    code, out, err = await send(None)

    lines = out.splitlines()
    assert code == 0, err
    assert lines[-1] == f"all {len(SCENARIO)} steps answered as expected"
    assert lines[1].startswith(" 1. signs up on Free") and lines[1].endswith("accepted  credits 35")
    assert "rejected insufficient_credits" in lines[10]
