"""Portal tokens: short-lived, signed, scoped to one account; verified without a database read.

A token reads `pt_<payload>.<signature>`, both base64url without padding: the payload is
`{"account_id": ..., "exp": <unix seconds>}` as JSON, the signature HMAC-SHA256 of
`pt_<payload>` under a secret of `CREDITS_PORTAL_TOKEN_SECRETS`. The first secret signs and
every listed one verifies, so a rotation is: put the new secret first (old one second), deploy;
once the longest token lifetime (`MAX_TTL_SECONDS`) has passed, drop the old one.

What a token allows (the reads of its account, a checkout and a top-up for it) is decided by the
routes (services/api/auth.py); this module only issues and checks tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

TOKEN_PREFIX = "pt_"
MIN_TTL_SECONDS = 1
# Short-lived: a page that needs longer asks its backend for a fresh token.
MAX_TTL_SECONDS = 3600
# Generous for a 128-character account id; anything longer is not one of ours.
MAX_TOKEN_CHARS = 512
_TOKEN = re.compile(r"^pt_([A-Za-z0-9_-]{1,400})\.([A-Za-z0-9_-]{43})$")
_ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


@dataclass(frozen=True)
class PortalToken:
    account_id: str
    expires_at: int  # unix seconds


class PortalTokens:
    def __init__(self, secret_list: list[str]) -> None:
        # Without secrets, one of this process's own (`run_api` says so in the log).
        self.random_secret = not secret_list
        self._keys = [s.encode() for s in secret_list or [secrets.token_urlsafe(32)]]

    def issue(self, account_id: str, ttl_seconds: int, now: float | None = None) -> PortalToken:
        assert _ACCOUNT_ID.match(account_id)
        assert MIN_TTL_SECONDS <= ttl_seconds <= MAX_TTL_SECONDS
        issued_at = int(time.time() if now is None else now)
        return PortalToken(account_id=account_id, expires_at=issued_at + ttl_seconds)

    def encode(self, token: PortalToken) -> str:
        payload = json.dumps(
            {"account_id": token.account_id, "exp": token.expires_at}, separators=(",", ":")
        )
        signed = TOKEN_PREFIX + _b64(payload.encode())
        return f"{signed}.{_b64(_sign(self._keys[0], signed))}"

    def verify(self, presented: str, now: float | None = None) -> PortalToken | None:
        """The token if its signature is ours, its payload well-formed and it has not expired."""
        match = _TOKEN.match(presented) if len(presented) <= MAX_TOKEN_CHARS else None
        if match is None:
            return None
        signed = presented.rsplit(".", 1)[0]
        # Compared as text, so that only the one canonical encoding of a signature passes
        # (base64's spare bits would otherwise give each signature several spellings).
        signature = match.group(2)
        if not any(hmac.compare_digest(_b64(_sign(key, signed)), signature) for key in self._keys):
            return None
        token = _payload(match.group(1))
        if token is None or token.expires_at <= (time.time() if now is None else now):
            return None
        return token


def _payload(encoded: str) -> PortalToken | None:
    raw = _unb64(encoded)
    try:
        payload = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    if not isinstance(payload, dict) or set(payload) != {"account_id", "exp"}:
        return None
    account_id, expires_at = payload["account_id"], payload["exp"]
    if not isinstance(account_id, str) or not _ACCOUNT_ID.match(account_id):
        return None
    if not isinstance(expires_at, int) or isinstance(expires_at, bool):
        return None
    return PortalToken(account_id=account_id, expires_at=expires_at)


def _sign(key: bytes, signed: str) -> bytes:
    return hmac.new(key, signed.encode("ascii"), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes | None:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
