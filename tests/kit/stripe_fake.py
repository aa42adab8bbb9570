"""A local fake Stripe for tests: localstripe, plus the few things it lacks.

`python -m tests.kit.stripe_fake --port N` runs localstripe's own aiohttp app (PaymentIntents with
saved cards and off-session confirmation, test-card declines, refunds, customers, signed
webhooks registered through `POST /_config/webhooks/{id}`) with these additions:

- `POST /v1/checkout/sessions` (localstripe has no Checkout): records each request (form
  fields as localstripe parses them, and the `Idempotency-Key` header) and answers a minimal
  open session with a `url`; the same idempotency key answers the same session, as Stripe does.
  `GET /_config/test/checkout_sessions` lists what was recorded.
- a refund sends `charge.refunded` (localstripe creates refunds silently);
- `POST /_config/test/disputes` with `charge` (and optional `amount`) opens a dispute and sends
  `charge.dispute.created` (localstripe has no disputes).
- its store is never written to /tmp (localstripe pickles it there after every request).

`FakeStripe` starts it as a subprocess on a free port for a test session.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.kit.ports import free_port

START_TIMEOUT_SECONDS = 20.0
# The project root (tests/kit/ is two levels down): `-m tests.kit.stripe_fake` runs from there.
PROJECT_DIR = Path(__file__).resolve().parents[2]


class FakeStripe:
    """A running `tests.kit.stripe_fake` subprocess; `api_base` is what the SDK points at."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.api_base = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, log_path: Path | None = None) -> FakeStripe:
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.kit.stripe_fake", "--port", str(self.port)],
            cwd=PROJECT_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"fake Stripe exited with {self._process.returncode}")
            try:
                httpx.get(f"{self.api_base}/_config/test/checkout_sessions", timeout=1.0)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"fake Stripe did not answer within {START_TIMEOUT_SECONDS} s")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        self._process = None

    def register_webhook(self, url: str, secret: str, events: list[str] | None = None) -> None:
        data: dict[str, Any] = {"url": url, "secret": secret}
        if events:
            data["events"] = events
        name = secrets.token_hex(4)
        response = httpx.post(f"{self.api_base}/_config/webhooks/{name}", json=data, timeout=5.0)
        response.raise_for_status()

    def checkout_requests(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.api_base}/_config/test/checkout_sessions", timeout=5.0)
        response.raise_for_status()
        return list(response.json())

    def dispute(self, charge_id: str, amount_cents: int | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"charge": charge_id}
        if amount_cents is not None:
            data["amount"] = amount_cents
        response = httpx.post(f"{self.api_base}/_config/test/disputes", json=data, timeout=5.0)
        response.raise_for_status()
        return dict(response.json())


def _serve(port: int) -> None:  # pragma: no cover - runs in the subprocess
    from aiohttp import web
    from localstripe import resources, server
    from localstripe.webhooks import schedule_webhook

    resources.store.dump_to_disk = lambda: None

    recorded: list[dict[str, Any]] = []
    by_key: dict[str, dict[str, Any]] = {}

    async def create_session(request: web.Request) -> web.Response:
        form = await server.get_post_data(request) or {}
        key = request.headers.get("Idempotency-Key")
        if key and key in by_key:
            return server.json_response(by_key[key])
        session_id = "cs_test_" + secrets.token_hex(12)
        items = form.get("line_items") or []
        total = sum(
            int(item["price_data"]["unit_amount"]) * int(item.get("quantity", 1))
            for item in items
            if isinstance(item, dict) and "price_data" in item
        )
        currency = next(
            (item["price_data"].get("currency") for item in items if "price_data" in item), None
        )
        session = {
            "id": session_id,
            "object": "checkout.session",
            "url": f"https://checkout.stripe.test/c/pay/{session_id}",
            "mode": form.get("mode"),
            "status": "open",
            "payment_status": "unpaid",
            "payment_intent": None,
            "customer": form.get("customer"),
            "client_reference_id": form.get("client_reference_id"),
            "metadata": form.get("metadata") or {},
            "amount_total": total,
            "currency": currency,
            "success_url": form.get("success_url"),
            "cancel_url": form.get("cancel_url"),
        }
        recorded.append({"form": form, "idempotency_key": key, "session": session})
        if key:
            by_key[key] = session
        return server.json_response(session)

    async def list_sessions(_: web.Request) -> web.Response:
        return server.json_response(recorded)

    class Dispute(resources.StripeObject):
        object = "dispute"
        _id_prefix = "dp_"

        def __init__(self, charge: Any, amount: int) -> None:
            super().__init__()
            self.charge = charge.id
            self.payment_intent = charge.payment_intent
            self.amount = amount
            self.currency = charge.currency
            self.reason = "fraudulent"
            self.status = "needs_response"
            self.metadata: dict[str, str] = {}

    async def open_dispute(request: web.Request) -> web.Response:
        data = await request.json()
        charge = resources.Charge._api_retrieve(data["charge"])
        dispute = Dispute(charge, int(data.get("amount", charge.amount)))
        schedule_webhook(resources.Event("charge.dispute.created", dispute))
        return server.json_response(dispute._export())

    original_refund_init = resources.Refund.__init__

    def refund_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_refund_init(self, *args, **kwargs)
        charge = resources.Charge._api_retrieve(self.charge)
        schedule_webhook(resources.Event("charge.refunded", charge))

    resources.Refund.__init__ = refund_init

    app = server.app
    app.router.add_post("/v1/checkout/sessions", create_session)
    app.router.add_get("/_config/test/checkout_sessions", list_sessions)
    app.router.add_post("/_config/test/disputes", open_dispute)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def main() -> None:  # pragma: no cover - runs in the subprocess
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.set_event_loop(asyncio.new_event_loop())
    _serve(args.port)


if __name__ == "__main__":
    main()
