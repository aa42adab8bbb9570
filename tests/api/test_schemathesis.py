"""schemathesis against the live API (uvicorn on a free port, the ledger and the projector
behind it, an admin key): bounded examples, every default check, no failure."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest

from infra.settings import Settings
from services.api import keys
from services.api.server import run_api
from tests.api.conftest import create_key
from tests.kit.ports import free_port

pytestmark = pytest.mark.integration

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = Path(__file__).with_name("schemathesis.toml")
ACCOUNT_ID = "schemathesis-acct"
MAX_EXAMPLES = 25
# The whole run stops by itself well within this; the test gives up after it.
RUN_TIMEOUT_SECONDS = 600


async def test_schemathesis_finds_no_failure_on_the_live_api(
    api_settings: Settings, ledger, projector_running, tmp_path: Path
):
    live = api_settings.model_copy(update={"http_port": free_port(), "ops_port": free_port()})
    admin_key = await create_key(live, keys.Scope.admin, name="schemathesis")
    ops_key = await create_key(live, keys.Scope.ops, name="schemathesis")
    stop = asyncio.Event()
    serving = asyncio.create_task(run_api(live, stop))
    base_url = f"http://127.0.0.1:{live.http_port}"
    try:
        async with httpx.AsyncClient(base_url=base_url) as client, asyncio.timeout(30):
            while True:
                try:
                    if (await client.get("/openapi.json")).status_code == 200:
                        break
                except httpx.ConnectError:
                    await asyncio.sleep(0.1)
            opened = await client.post(
                f"/v1/accounts/{ACCOUNT_ID}/commands",
                json={"type": "open_account", "command_id": "open", "plan": "pro"},
                headers={"Authorization": f"Bearer {admin_key}"},
            )
            assert opened.status_code == 200, opened.text
        process = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS),
            "--config-file",
            str(CONFIG),
            "run",
            f"{base_url}/openapi.json",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "20261202",
            "--workers",
            "1",
            "--max-failures",
            "20",
            "--report-dir",
            str(tmp_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
            env={
                **os.environ,
                "NO_COLOR": "1",
                "SCHEMATHESIS_ADMIN_KEY": admin_key,
                "SCHEMATHESIS_OPS_KEY": ops_key,
                "SCHEMATHESIS_ACCOUNT_ID": ACCOUNT_ID,
            },
        )
        output, _ = await asyncio.wait_for(process.communicate(), timeout=RUN_TIMEOUT_SECONDS)
    finally:
        stop.set()
        await asyncio.wait_for(serving, timeout=30)
    report = output.decode(errors="replace")
    assert process.returncode == 0, report[-20_000:]
    assert "passed" in report and "failure" not in report.split("SUMMARY")[-1], report[-5000:]
