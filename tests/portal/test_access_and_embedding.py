"""Who may open the page and where: an expired, forged or missing token shows nothing of the
account; a token reads its own account only; the page embeds in the allowed parents only (CSP
frame-ancestors from CREDITS_PORTAL_FRAME_ANCESTORS) and loads nothing from elsewhere."""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from playwright.async_api import BrowserContext, Page, expect

from infra.settings import Settings
from services.api.portal_tokens import PortalToken, PortalTokens
from tests.api.conftest import PORTAL_SECRET, bearer
from tests.kit.stripe_fake import FakeStripe
from tests.portal.stack import PortalStack, portal_stack

pytestmark = [pytest.mark.integration, pytest.mark.browser]


@pytest.fixture(scope="module")
async def stack(
    settings: Settings, pg_database: str, fake_stripe: FakeStripe
) -> AsyncIterator[PortalStack]:
    async with portal_stack(settings, "seed_002_plus_credits.toml", fake_stripe) as running:
        yield running


async def shows_nothing_of_the_account(page: Page, why: str) -> None:
    await expect(page.get_by_test_id("refused")).to_contain_text(why)
    await expect(page.get_by_test_id("plan-name")).to_have_text("…")
    await expect(page.get_by_test_id("credit-type")).to_have_count(0)
    await expect(page.get_by_test_id("live")).to_have_attribute("data-state", "off")


async def test_an_expired_a_forged_and_a_missing_token_show_nothing(
    stack: PortalStack, context: BrowserContext
) -> None:
    account_id = await stack.open_account("plus")
    now = int(time.time())
    expired = PortalTokens([PORTAL_SECRET]).encode(PortalToken(account_id, now - 60))
    forged = PortalTokens(["not-the-service-secret"]).encode(PortalToken(account_id, now + 600))
    page = await context.new_page()
    for token in (expired, forged):
        await page.goto(f"{stack.base_url}/#token={token}")
        await shows_nothing_of_the_account(page, "expired or is not valid")
        await page.evaluate("sessionStorage.clear()")
    await page.goto(f"{stack.base_url}/")
    await shows_nothing_of_the_account(page, "needs a portal link")


async def test_a_token_reads_its_own_account_only_and_sends_only_top_ups(
    stack: PortalStack,
) -> None:
    mine = await stack.open_account("plus")
    other = await stack.open_account("plus")
    token = bearer(await stack.token(mine))
    http = stack.http
    assert (await http.get(f"/v1/accounts/{mine}/overview", headers=token)).status_code == 200
    for path in ("overview", "usage", "transactions", "changes"):
        foreign = await http.get(f"/v1/accounts/{other}/{path}", headers=token)
        assert foreign.status_code == 403, path
        assert foreign.json()["error"]["code"] == "forbidden"
    spend = {"type": "consume", "command_id": "c-1", "action": "generation"}
    refused = await http.post(f"/v1/accounts/{mine}/commands", json=spend, headers=token)
    assert refused.status_code == 403
    issue = {"account_id": mine, "ttl_seconds": 60}
    assert (await http.post("/v1/portal-tokens", json=issue, headers=token)).status_code == 403


@contextlib.contextmanager
def host_site(html: str) -> Iterator[int]:
    """A host product's page on 127.0.0.1 (reachable as localhost too): the port."""

    class Host(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Host)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


async def test_the_page_embeds_in_allowed_parents_only_and_loads_only_its_own_assets(
    stack: PortalStack, context: BrowserContext
) -> None:
    account_id = await stack.open_account("plus")
    src = await stack.page_url(account_id)
    html = f'<h1>Host</h1><iframe id="portal" title="Plan and usage" src="{src}"></iframe>'
    page = await context.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    with host_site(html) as port:
        # Allowed: http://localhost:* is in CREDITS_PORTAL_FRAME_ANCESTORS.
        await page.goto(f"http://localhost:{port}/billing")
        embedded = page.frame_locator("#portal")
        await expect(embedded.get_by_test_id("plan-name")).to_have_text("PLUS")
        await expect(embedded.get_by_test_id("available")).to_have_text("300")
        # The same page under another origin (127.0.0.1:port) is not an allowed parent.
        await page.goto(f"http://127.0.0.1:{port}/billing", wait_until="load")
        await expect(page.get_by_role("heading", name="Host")).to_be_visible()
        frames = [f for f in page.frames if f != page.main_frame]
        assert len(frames) == 1
        assert await frames[0].locator("[data-testid=plan-name]").count() == 0
    own = (stack.base_url, f"http://localhost:{port}", f"http://127.0.0.1:{port}")
    assert [url for url in requested if not url.startswith(own)] == []

    served = await stack.http.get("/")
    policy = served.headers["content-security-policy"]
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'self' http://localhost:*" in policy
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert served.headers["referrer-policy"] == "no-referrer"
    assert (await stack.http.get("/portal/portal.js")).status_code == 200
    missing = await stack.http.get("/portal/secrets.txt")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
