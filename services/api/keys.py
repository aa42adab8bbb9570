"""API keys in PostgreSQL: only a hash of each key is stored; the key is shown once.

A key reads `ck_<key_id>.<secret>`: the key id (public, 16 hex digits) finds the row, the
secret (32 random bytes) is checked against its SHA-256 with a constant-time comparison. A slow
password hash would add nothing: the secret has 256 bits of entropy, so its hash cannot be
guessed back, and a fast one keeps the check off the request's critical path.

No cache: every request reads its key's row by primary key, so `credits keys revoke` takes
effect at the next request on every API instance (docs/API.md).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg

from infra.schema_lock import creating_schema_asyncpg

TABLE = "api_keys"
KEY_PREFIX = "ck_"
_KEY = re.compile(r"^ck_([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$")
NAME_PATTERN = r"^[A-Za-z0-9 ._:@-]{1,64}$"


class Scope(StrEnum):
    read = "read"
    write = "write"
    admin = "admin"
    ops = "ops"


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    scope: Scope
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    # The only time the full key exists outside its holder: printed once, never stored.
    secret_key: str


async def ensure_table(conn: asyncpg.Connection) -> None:
    async with creating_schema_asyncpg(conn):
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} ("
            "key_id text PRIMARY KEY, "
            "name text NOT NULL, "
            "scope text NOT NULL CHECK (scope IN ('read', 'write', 'admin', 'ops')), "
            "secret_sha256 bytea NOT NULL, "
            "created_at timestamptz NOT NULL DEFAULT now(), "
            "revoked_at timestamptz)"
        )


async def create_key(conn: asyncpg.Connection, name: str, scope: Scope) -> NewKey:
    if not re.match(NAME_PATTERN, name):
        raise ValueError(f"name must match {NAME_PATTERN}")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = await conn.fetchrow(
        f"INSERT INTO {TABLE} (key_id, name, scope, secret_sha256) VALUES ($1, $2, $3, $4) "
        "RETURNING created_at",
        key_id,
        name,
        scope.value,
        _sha256(secret),
    )
    assert row is not None
    key = ApiKey(key_id, name, scope, row["created_at"], None)
    return NewKey(key=key, secret_key=f"{KEY_PREFIX}{key_id}.{secret}")


async def list_keys(conn: asyncpg.Connection) -> list[ApiKey]:
    rows = await conn.fetch(
        f"SELECT key_id, name, scope, created_at, revoked_at FROM {TABLE} ORDER BY created_at"
    )
    return [_key(row) for row in rows]


async def revoke_key(conn: asyncpg.Connection, key_id: str) -> bool:
    """True if the key existed and was active; it is refused from the next request on."""
    status = await conn.execute(
        f"UPDATE {TABLE} SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL",
        key_id,
    )
    return str(status) == "UPDATE 1"


async def verify_key(conn: asyncpg.Connection, presented: str) -> ApiKey | None:
    """The active key `presented` is, or None (malformed, unknown, wrong secret or revoked)."""
    match = _KEY.match(presented)
    if match is None:
        return None
    key_id, secret = match.groups()
    row = await conn.fetchrow(
        f"SELECT key_id, name, scope, created_at, revoked_at, secret_sha256 FROM {TABLE} "
        "WHERE key_id = $1",
        key_id,
    )
    if row is None:
        return None
    if not hmac.compare_digest(_sha256(secret), bytes(row["secret_sha256"])):
        return None
    if row["revoked_at"] is not None:
        return None
    return _key(row)


def _sha256(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def _key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        key_id=row["key_id"],
        name=row["name"],
        scope=Scope(row["scope"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )
