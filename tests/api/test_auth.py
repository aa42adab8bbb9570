"""Access: every /v1 route refuses anonymous callers (401) and keys of the wrong scope (403),
generated from the app's route table and the scopes the document declares, so a new route
cannot be forgotten; command types need their own scope; portal tokens read their own account
and start a checkout or top-up for it, nothing else; expired or tampered tokens are refused."""

from __future__ import annotations

import base64
import json
import string
import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.api.auth import PORTAL_EXTENSION, reaches
from services.api.keys import Scope
from services.api.portal_tokens import PortalTokens
from services.api.route_table import served_routes
from tests.api.conftest import PORTAL_SECRET, bearer

pytestmark = pytest.mark.integration

ACCOUNT = "auth-acct"
# Any JSON object: access is decided before the body is looked at.
BODY = {"account_id": ACCOUNT, "ttl_seconds": 60, "pack": "p"}


def _v1_operations(app: FastAPI) -> list[tuple[str, str, str, bool]]:
    """(method, concrete path, scope, takes portal tokens) for every /v1 route served."""
    document = app.openapi()
    found = []
    for route in served_routes(app):
        if not route.path.startswith("/v1/"):
            continue
        for method in sorted(route.methods - {"HEAD"}):
            operation = document["paths"][route.path][method.lower()]
            (requirement,) = operation.get("security", [{}])
            (scope,) = requirement.get("bearer", [None])
            assert scope is not None, f"{method} {route.path} declares no scope"
            path = route.path.replace("{account_id}", ACCOUNT).replace("{command_id}", "c-1")
            found.append((method, path, scope, bool(operation.get(PORTAL_EXTENSION))))
    assert len(found) >= 7
    return found


async def _call(app: FastAPI, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        body: Any = BODY if method == "POST" else None
        return await client.request(method, path, json=body, headers=headers)


async def test_every_v1_route_refuses_anonymous_and_wrong_scope_callers(api, scope_keys):
    portal = PortalTokens([PORTAL_SECRET])
    own_token = portal.encode(portal.issue(ACCOUNT, 60))
    others_token = portal.encode(portal.issue("someone-else", 60))
    checked = 0
    for method, path, scope, takes_portal in _v1_operations(api):
        for headers in ({}, bearer("ck_0123456789abcdef.nope"), {"Authorization": "Basic x"}):
            anonymous = await _call(api, method, path, headers)
            assert anonymous.status_code == 401, (method, path, headers, anonymous.text)
            assert anonymous.json()["error"]["code"] == "unauthenticated"
            assert anonymous.headers["www-authenticate"] == "Bearer"
        for key_scope, key in scope_keys.items():
            if reaches(key_scope, scope):
                continue
            wrong = await _call(api, method, path, bearer(key))
            assert wrong.status_code == 403, (method, path, key_scope, wrong.text)
            assert wrong.json()["error"]["code"] == "forbidden"
            checked += 1
        # A portal token: refused where portal tokens are not taken, and on another account's
        # path where they are (checkout names its account in the body: see the portal tests).
        token = others_token if takes_portal else own_token
        if not takes_portal or ACCOUNT in path:
            refused = await _call(api, method, path, bearer(token))
            assert refused.status_code == 403, (method, path, refused.text)
            checked += 1
    assert checked >= 14


async def test_command_types_need_their_scope(client, scope_keys):
    url = "/v1/accounts/scoped-acct/commands"

    def command(type: str, **fields: Any) -> dict[str, Any]:
        return {"type": type, "command_id": f"{type}-1", **fields}

    grant = command("grant", credit_type="credits", amount=5, source="admin")
    consume = command("consume", action="lookup")
    write = bearer(scope_keys[Scope.write])
    by_writer = await client.post(url, json=grant, headers=write)
    assert by_writer.status_code == 403 and by_writer.json()["error"]["code"] == "forbidden"
    for type in ("request_top_up", "expire", "fail_top_up", "open_account", "migrate"):
        refused = await client.post(url, json=command(type), headers=write)
        assert refused.status_code == 403, type
    # Past access, the ledger answers (the account does not exist).
    spent = await client.post(url, json=consume, headers=write)
    assert spent.status_code == 404 and spent.json()["error"]["code"] == "unknown_account"
    # A streaming call's own hold: a writer extends it.
    extend = command("extend_hold", hold_id="h1", ttl_seconds=60)
    extended = await client.post(url, json=extend, headers=write)
    assert extended.status_code == 404 and extended.json()["error"]["code"] == "unknown_account"
    granted = await client.post(url, json=grant)  # the client's admin key
    assert granted.status_code == 404 and granted.json()["error"]["code"] == "unknown_account"
    # A type the ledger does not know: any writer learns it is invalid.
    unknown = await client.post(url, json=command("steal"), headers=write)
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "invalid_command"


async def _portal_token(client: httpx.AsyncClient, account_id: str, ttl_seconds: int = 60) -> str:
    issued = await client.post(
        "/v1/portal-tokens", json={"account_id": account_id, "ttl_seconds": ttl_seconds}
    )
    assert issued.status_code == 201, issued.text
    assert issued.json()["account_id"] == account_id
    token: str = issued.json()["token"]
    return token


async def test_a_portal_token_reads_its_account_and_starts_a_top_up_but_nothing_else(
    client, scope_keys
):
    mine, other = f"portal-{time.time_ns()}", f"other-{time.time_ns()}"
    for account_id in (mine, other):
        opened = await client.post(
            f"/v1/accounts/{account_id}/commands",
            json={"type": "open_account", "command_id": "open", "plan": "starter"},
        )
        assert opened.status_code == 200, opened.text
        position = opened.json()["position"]
    token = bearer(await _portal_token(client, mine))

    own = await client.get(f"/v1/accounts/{mine}", params={"min_position": position}, headers=token)
    assert own.status_code == 200 and own.json()["account_id"] == mine
    for path in ("/usage", "/transactions", "/commands/open"):
        assert (await client.get(f"/v1/accounts/{mine}{path}", headers=token)).status_code == 200
    top_up = {"type": "request_top_up", "command_id": "t1", "credit_type": "credits", "amount": 50}
    started = await client.post(f"/v1/accounts/{mine}/commands", json=top_up, headers=token)
    assert started.status_code != 403, "a top-up for its own account passes"
    assert started.json()["command_id"] == "t1"
    checkout = await client.post(
        "/v1/checkout", json={"account_id": mine, "pack": "no_such_pack"}, headers=token
    )
    assert checkout.status_code == 400, "past access: the pack is refused, not the caller"
    assert checkout.json()["error"]["code"] == "invalid_command"

    refused = [
        await client.get(f"/v1/accounts/{other}", headers=token),
        await client.get(f"/v1/accounts/{other}/transactions", headers=token),
        await client.post(f"/v1/accounts/{other}/commands", json=top_up, headers=token),
        await client.post(
            f"/v1/accounts/{mine}/commands",
            json={"type": "consume", "command_id": "c", "action": "lookup"},
            headers=token,
        ),
        await client.post(
            f"/v1/accounts/{mine}/commands",
            json={
                "type": "grant",
                "command_id": "g",
                "credit_type": "credits",
                "amount": 1,
                "source": "admin",
            },
            headers=token,
        ),
        await client.post("/v1/checkout", json={"account_id": other, "pack": "p"}, headers=token),
        await client.post(
            "/v1/portal-tokens", json={"account_id": mine, "ttl_seconds": 60}, headers=token
        ),
        await client.get("/v1/ops/projections", headers=token),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    assert {r.json()["error"]["code"] for r in refused} == {"forbidden"}


async def test_only_admin_keys_issue_portal_tokens_with_a_bounded_lifetime(client, scope_keys):
    body = {"account_id": "someone", "ttl_seconds": 60}
    for scope in (Scope.read, Scope.write, Scope.ops):
        refused = await client.post(
            "/v1/portal-tokens", json=body, headers=bearer(scope_keys[scope])
        )
        assert refused.status_code == 403
    for bad in (
        {**body, "ttl_seconds": 0},
        {**body, "ttl_seconds": 3601},
        {**body, "ttl_seconds": "60"},
        {**body, "account_id": "a/b"},
        {"account_id": "x"},
    ):
        response = await client.post("/v1/portal-tokens", json=bad)
        assert response.status_code == 422, bad
        assert response.json()["error"]["code"] == "invalid_request"


def _tampered_payload(token: str, account_id: str) -> str:
    payload, signature = token.removeprefix("pt_").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["account_id"] = account_id
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"pt_{forged}.{signature}"


async def test_expired_and_tampered_portal_tokens_are_refused(client, api):
    account_id = f"expiry-{time.time_ns()}"
    signer = PortalTokens([PORTAL_SECRET])
    expired = signer.encode(signer.issue(account_id, 60, now=time.time() - 61))
    good = await _portal_token(client, account_id)
    middle = len(good) - 10
    signature_flipped = good[:middle] + ("A" if good[middle] != "A" else "B") + good[middle + 1 :]
    # The same signature bytes spelled another way (base64's two spare bits): not canonical.
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    respelled = good[:-1] + alphabet[alphabet.index(good[-1]) ^ 1]
    assert base64.urlsafe_b64decode(respelled.split(".")[1] + "=") == base64.urlsafe_b64decode(
        good.split(".")[1] + "="
    )
    other_secret = PortalTokens(["not-our-secret"])
    foreign = other_secret.encode(other_secret.issue(account_id, 60))
    for token in (
        expired,
        _tampered_payload(good, "someone-else"),
        signature_flipped,
        respelled,
        foreign,
        good + "x",
        "pt_",
    ):
        response = await client.get(f"/v1/accounts/{account_id}", headers=bearer(token))
        assert response.status_code == 401, token
        assert response.json()["error"]["code"] == "unauthenticated"
    assert (await client.get(f"/v1/accounts/{account_id}", headers=bearer(good))).status_code in (
        200,
        404,
    ), "the untampered token passes (the account itself is unknown)"


def test_a_rotation_verifies_tokens_of_the_old_secret():
    old = PortalTokens(["old"])
    token = old.encode(old.issue("acct", 60))
    rotated = PortalTokens(["new", "old"])
    assert rotated.verify(token) is not None
    assert PortalTokens(["new"]).verify(token) is None
    assert rotated.encode(rotated.issue("acct", 60)) != token
    assert old.verify(rotated.encode(rotated.issue("acct", 60))) is None, "new signs"
