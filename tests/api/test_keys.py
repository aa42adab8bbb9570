"""API keys: `credits keys create` prints a key once and PostgreSQL keeps only its hash;
`credits keys list` shows ids and scopes; a key revoked with `credits keys revoke` is refused
from the very next request; keys never reach the logs."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from services.api import keys
from services.cli.main import main
from tests.api.conftest import bearer

pytestmark = pytest.mark.integration


@pytest.fixture
def cli_settings(monkeypatch, api_settings):
    """`credits` as run against this test's database."""
    monkeypatch.setenv("CREDITS_PG_DATABASE", api_settings.pg_database)
    return api_settings


async def _run(capsys, *argv: str) -> tuple[int, str, str]:
    # The CLI runs its own event loop: on a thread of its own, as from a shell.
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_a_key_is_shown_once_stored_as_a_hash_and_refused_once_revoked(
    client, cli_settings, capsys, logging_restored
):
    code, out, err = await _run(
        capsys, "keys", "create", "--name", "billing job", "--scope", "read"
    )
    assert code == 0
    secret_key = out.strip()
    assert secret_key.startswith("ck_") and "\n" not in secret_key
    key_id = secret_key.removeprefix("ck_").split(".")[0]
    assert key_id in err and "not shown again" in err

    conn = await asyncpg.connect(cli_settings.pg_dsn())
    try:
        rows = [dict(r) for r in await conn.fetch(f"SELECT * FROM {keys.TABLE}")]
    finally:
        await conn.close()
    stored = [row for row in rows if row["key_id"] == key_id]
    assert len(stored) == 1 and stored[0]["scope"] == "read"
    secret = secret_key.split(".", 1)[1]
    assert all(secret not in str(value) for row in rows for value in row.values())

    listed = (await _run(capsys, "keys", "list"))[1]
    assert key_id in listed and "billing job" in listed and secret not in listed

    headers = bearer(secret_key)
    before = await client.get("/v1/accounts/someone", headers=headers)
    assert before.status_code == 404, "the key works: the account is unknown"

    code, out, _ = await _run(capsys, "keys", "revoke", key_id)
    assert code == 0
    after = await client.get("/v1/accounts/someone", headers=headers)
    assert after.status_code == 401, "refused at once, on the very next request"
    assert after.json()["error"]["code"] == "unauthenticated"
    assert (await _run(capsys, "keys", "revoke", key_id))[0] == 1, "already revoked"
    row = (await _run(capsys, "keys", "list"))[1].split(key_id)[1].split("\n")[0].split()
    assert row[0] == "read" and row[3] != "-", "listed with its revocation time"

    wrong_secret = f"ck_{key_id}.{'A' * 43}"
    assert (await client.get("/v1/accounts/x", headers=bearer(wrong_secret))).status_code == 401
    logged = capsys.readouterr()
    assert secret not in logged.out + logged.err, "keys are never logged"


def test_the_keys_commands_have_help(capsys, logging_restored):
    for argv in (["keys"], ["keys", "create"], ["keys", "list"], ["keys", "revoke"]):
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--help"])
        assert exit_.value.code == 0
        assert "usage: credits keys" in capsys.readouterr().out


def test_a_malformed_key_is_never_looked_up():
    for presented in ("", "ck_", "ck_zz.abc", "ck_0123456789abcdef", "pt_x.y", "ck_" + "a" * 500):
        assert keys._KEY.match(presented) is None
