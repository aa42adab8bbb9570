"""`credits keys`: create, list and revoke the HTTP API's keys."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator

import asyncpg

from infra.settings import Settings
from services.api import keys as api_keys
from services.cli.parsing import Commands, group


def _cmd_keys_create(args: argparse.Namespace, settings: Settings) -> int:
    async def create() -> api_keys.NewKey:
        async with _keys_connection(settings) as conn:
            return await api_keys.create_key(conn, args.name, api_keys.Scope(args.scope))

    created = asyncio.run(create())
    # The key on standard output, alone, so it can be captured; shown this once only.
    print(created.secret_key)
    print(
        f"key_id {created.key.key_id} ({created.key.scope.value}, {created.key.name}): store the "
        "key now, it is not shown again",
        file=sys.stderr,
    )
    return 0


def _cmd_keys_list(_: argparse.Namespace, settings: Settings) -> int:
    async def read() -> list[api_keys.ApiKey]:
        async with _keys_connection(settings) as conn:
            return await api_keys.list_keys(conn)

    print(f"{'key_id':<16}  {'scope':<5}  {'created_at':<19}  {'revoked_at':<19}  name")
    for key in asyncio.run(read()):
        revoked = f"{key.revoked_at:%Y-%m-%d %H:%M:%S}" if key.revoked_at else "-"
        print(
            f"{key.key_id:<16}  {key.scope.value:<5}  {key.created_at:%Y-%m-%d %H:%M:%S}  "
            f"{revoked:<19}  {key.name}"
        )
    return 0


def _cmd_keys_revoke(args: argparse.Namespace, settings: Settings) -> int:
    async def revoke() -> bool:
        async with _keys_connection(settings) as conn:
            return await api_keys.revoke_key(conn, args.key_id)

    if not asyncio.run(revoke()):
        print(f"no active key {args.key_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}: refused from the next request on")
    return 0


@contextlib.asynccontextmanager
async def _keys_connection(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """A connection for one keys command, with the keys table created if missing."""
    conn = await asyncpg.connect(settings.pg_dsn(), timeout=settings.pg_connect_timeout_seconds)
    try:
        await api_keys.ensure_table(conn)
        yield conn
    finally:
        await conn.close()


def add_commands(commands: Commands) -> None:
    key_commands = group(
        commands,
        "keys",
        "manage API keys",
        "Create, list and revoke the API keys of the HTTP API (docs/API.md). PostgreSQL keeps "
        "only a hash of each key.",
    )
    key_create = key_commands.add_parser(
        "create",
        help="create a key and print it (once)",
        description="Creates an API key with one scope and prints it on standard output; it "
        "is not stored and cannot be shown again. Scopes: read (account reads), write (read, "
        "and consume, reserve, capture, release), admin (write, and every other command, "
        "portal tokens, checkout), ops (operator reads only).",
    )
    key_create.add_argument("--name", required=True, help="who or what holds the key")
    key_create.add_argument(
        "--scope", required=True, choices=[s.value for s in api_keys.Scope], help="its scope"
    )
    key_create.set_defaults(handler=_cmd_keys_create)
    key_list = key_commands.add_parser(
        "list",
        help="list keys (ids, scopes, names; never the keys)",
        description="Lists every key: its id, scope, creation and revocation times, and name.",
    )
    key_list.set_defaults(handler=_cmd_keys_list)
    key_revoke = key_commands.add_parser(
        "revoke",
        help="revoke a key; refused from the next request on",
        description="Revokes the key with this id (the part after ck_ and before the dot). "
        "Every API instance refuses it from its next request. Exits 1 when no active key "
        "has that id.",
    )
    key_revoke.add_argument("key_id", help="the key id, as `credits keys list` shows it")
    key_revoke.set_defaults(handler=_cmd_keys_revoke)
