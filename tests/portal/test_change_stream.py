"""The change stream behind the page's live updates: the projector NOTIFYs each batch it
commits; `GET /v1/accounts/{id}/changes` says `changed` once the page's read models have the
account's last event, and ends when the portal token expires."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from infra.settings import Settings
from projections.projector import PROJECTED_CHANNEL
from services.api.changes import PAGE_PROJECTIONS
from tests.api.conftest import bearer
from tests.kit.stripe_fake import FakeStripe
from tests.portal.stack import PortalStack, portal_stack

pytestmark = [pytest.mark.integration]
WAIT_SECONDS = 20


@pytest.fixture(scope="module")
async def stack(
    settings: Settings, pg_database: str, fake_stripe: FakeStripe
) -> AsyncIterator[PortalStack]:
    async with portal_stack(settings, "seed_002_plus_credits.toml", fake_stripe) as running:
        yield running


async def frames(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) of each frame; ("", "") for one without an event (`retry`)."""
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
        while "\n\n" in buffer:
            frame, buffer = buffer.split("\n\n", 1)
            fields = dict(
                line.split(": ", 1) for line in frame.split("\n") if line and ": " in line
            )
            if frame and not frame.startswith(":"):
                yield fields.get("event", ""), fields.get("data", "")


async def test_the_projector_notifies_each_read_model_it_moved(stack: PortalStack) -> None:
    account_id = await stack.open_account("plus")
    heard: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(stack.settings.pg_dsn())
    try:
        await conn.add_listener(PROJECTED_CHANNEL, lambda *args: heard.put_nowait(args[3]))
        reply = await stack.command(account_id, "consume", action="generation")
        reached: dict[str, int] = {}
        async with asyncio.timeout(WAIT_SECONDS):
            while not all(reached.get(n, 0) >= reply["position"] for n in PAGE_PROJECTIONS):
                name, position = (await heard.get()).split(":")
                reached[name] = max(reached.get(name, 0), int(position))
    finally:
        await conn.close()
    # Every page read model told its commit (the loop ends only so, within its bound).
    assert set(PAGE_PROJECTIONS) <= set(reached)


async def test_the_stream_says_changed_with_the_position_and_ends_with_the_token(
    stack: PortalStack,
) -> None:
    account_id = await stack.open_account("plus")
    before = (await stack.settled(account_id, 0))["position"]
    token = await stack.token(account_id, ttl_seconds=3)
    seen: list[tuple[str, str]] = []
    async with (
        asyncio.timeout(WAIT_SECONDS),
        stack.http.stream(
            "GET", f"/v1/accounts/{account_id}/changes?since={before}", headers=bearer(token)
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        sent = False
        async for event, data in frames(response):
            if event:
                seen.append((event, data))
            if not sent:
                reply = await stack.command(account_id, "consume", action="generation")
                sent = True
    # `retry` first (no event), then the change, then the end at the token's expiry.
    assert [e for e, _ in seen] == ["changed", "expired"]
    assert json.loads(seen[0][1]) == {"account_id": account_id, "position": reply["position"]}


async def test_a_stopping_api_ends_its_streams(stack: PortalStack) -> None:
    """Last in the module: the stack's feed stays ended, as a stopping API's does."""
    account_id = await stack.open_account("plus")
    token = await stack.token(account_id)
    app_changes = None
    async with (
        asyncio.timeout(WAIT_SECONDS),
        stack.http.stream(
            "GET", f"/v1/accounts/{account_id}/changes", headers=bearer(token)
        ) as response,
    ):
        async for _ in response.aiter_text():
            if app_changes is None:
                app_changes = stack.changes
                app_changes.end_streams()
    assert app_changes is not None and app_changes.subscribers == 0
