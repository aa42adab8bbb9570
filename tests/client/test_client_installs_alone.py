"""The client is a distribution of its own (clients/python): its wheel, installed alone into a
clean virtualenv, round-trips commands through the real Kafka to a running ledger, with none of
the service's packages or heavy dependencies there.

Everything outside this process runs as a subprocess awaited on the event loop: the ledger of
these tests runs on that loop too and must keep answering meanwhile. pip's downloads are
cached under the repository's `.local/` (ignored by git), so a rerun needs no network.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from infra.settings import Settings
from tests.client.conftest import RunningLedger, account

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]
CLIENT_PROJECT = PROJECT / "clients" / "python"
PIP_CACHE = PROJECT / ".local" / "pip-cache"
# Building, creating the venv and installing: a minute at most from the cache, more the first
# time PyPI is asked.
STEP_TIMEOUT_SECONDS = 300
# What the service needs and a producer must not have to install, and the service's own code.
NOT_INSTALLED = [
    "eventsourcing",
    "stripe",
    "psycopg",
    "asyncpg",
    "fastapi",
    "starlette",
    "structlog",
    "infra",
    "services",
    "projections",
    "contracts",
]

ROUND_TRIP = """
import asyncio, json, sys, uuid

import credits_client, domain.commands
from credits_client import CreditsClient, KafkaSettings


async def main(account_id: str) -> None:
    # Settings from the environment, as a producer service reads them.
    async with CreditsClient(
        KafkaSettings(),
        client_id=f"alone-{uuid.uuid4().hex[:8]}",
        delete_reply_topic_on_stop=True,
        timeout_seconds=30,
    ) as credits:
        opened = await credits.open_account(account_id, "pro")
        granted = await credits.grant(account_id, "credits", 100, source="promotional")
        spent = await credits.consume(account_id, "generate", quantity=2)
        refused = await credits.consume(account_id, credit_type="credits", amount=10**9)
    print(json.dumps({
        "replies": [r.model_dump(mode="json") for r in (opened, granted, spent, refused)],
        "files": [credits_client.__file__, domain.commands.__file__],
        "service_modules": sorted(
            m for m in sys.modules if m.split(".")[0] in {"infra", "services", "projections"}
        ),
    }))


asyncio.run(main(sys.argv[1]))
"""


async def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    """The command's stdout; fails the test with its output if it fails or outlasts its bound."""
    process = await asyncio.create_subprocess_exec(
        *map(str, command),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(STEP_TIMEOUT_SECONDS):
            stdout, stderr = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, (
        f"{command} exited {process.returncode}:\n{stdout.decode()}\n{stderr.decode()}"
    )
    return stdout.decode()


def clean_env(**variables: str) -> dict[str, str]:
    # Nothing of this checkout on the venv's path: PYTHONPATH would hand it the service.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return {**env, "PIP_CACHE_DIR": str(PIP_CACHE), "PIP_DISABLE_PIP_VERSION_CHECK": "1"} | (
        variables
    )


async def test_the_client_installs_alone_and_round_trips_commands(
    ledger: RunningLedger, topics: Settings, tmp_path: Path
) -> None:
    env = clean_env()
    await run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", tmp_path / "dist",
        CLIENT_PROJECT, cwd=tmp_path, env=env,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("credits_client-*.whl")
    venv = tmp_path / "venv"
    # Without pip of its own (seconds saved): this process's pip installs into it.
    await run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    await run(
        sys.executable, "-m", "pip", "--python", python, "install", "--quiet", wheel,
        cwd=tmp_path, env=env,
    )  # fmt: skip

    present = await run(
        python, "-c",
        "import importlib.util, json, sys; "
        "print(json.dumps([m for m in sys.argv[1:] if importlib.util.find_spec(m)]))",
        *NOT_INSTALLED, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert json.loads(present) == [], "the client's venv holds what it must not need"

    acct = account("alone")
    script = tmp_path / "round_trip.py"
    script.write_text(ROUND_TRIP)
    output = await run(
        python, script, acct,
        cwd=tmp_path,
        env=clean_env(
            CREDITS_KAFKA_BOOTSTRAP=topics.kafka_bootstrap,
            CREDITS_TOPIC_PREFIX=topics.topic_prefix,
        ),
    )  # fmt: skip
    result = json.loads(output)
    print(
        "replies from the wheel's venv:",
        [
            (r["status"], r["balances"]["credits"]["available"], r["error"])
            for r in result["replies"]
        ],
    )
    assert all(Path(f).is_relative_to(venv) for f in result["files"]), result["files"]
    assert result["service_modules"] == []

    opened, granted, spent, refused = result["replies"]
    assert [r["account_id"] for r in result["replies"]] == [acct] * 4
    assert [r["status"] for r in result["replies"]] == [
        "accepted",
        "accepted",
        "accepted",
        "rejected",
    ], result["replies"]
    start = opened["balances"]["credits"]["available"]
    assert granted["balances"]["credits"]["available"] == start + 100
    # generate costs 2 on pro.
    assert spent["balances"]["credits"]["available"] == start + 100 - 4
    assert refused["error"]["code"] == "insufficient_credits"
