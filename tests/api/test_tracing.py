"""One trace from an HTTP command through the ledger to the relay: the API's server span, the
ledger's span for the command and the relay's span share the trace id of the request's
`traceparent`, the reply carries the ledger's span, and the CloudEvent the relay publishes
carries it as its `traceparent` attribute (CloudEvents distributed-tracing extension)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from contracts.asyncapi.cloud_events import cloud_event_adapter
from infra.event_store.env import event_store_env
from infra.kafka_clients import consumer
from infra.ledger_application import LedgerApplication
from infra.settings import Settings, Topic
from services.relay.relay import OutboxRelay

pytestmark = pytest.mark.integration

TRACE_ID = uuid.uuid4().hex
CALLER_SPAN_ID = uuid.uuid4().hex[:16]
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN_ID}-01"
WITHIN_SECONDS = 60.0


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """The SDK with an in-memory exporter, as OTEL_TRACES_EXPORTER would install one."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # once per process: the API allows no other
    yield exporter
    exporter.shutdown()  # later tests' spans are not kept


@pytest.fixture
async def relay(api_settings: Settings) -> AsyncIterator[None]:
    app = LedgerApplication(env=event_store_env(api_settings))
    stop = asyncio.Event()
    task = asyncio.create_task(OutboxRelay(api_settings, app).run(stop))
    yield
    stop.set()
    await asyncio.wait_for(task, timeout=30)
    app.close()


async def _cloud_events(settings: Settings, account_id: str, count: int) -> list[dict[str, Any]]:
    reader = consumer(
        settings,
        settings.topic(Topic.EVENTS),
        client_id="tracing-test",
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await reader.start()
    found: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + WITHIN_SECONDS
        while len(found) < count and time.monotonic() < deadline:
            batches = await reader.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    event = json.loads(record.value or b"{}")
                    if event.get("subject") == account_id:
                        found.append(event)
    finally:
        await reader.stop()
    return found


def _spans_of_trace(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if s.context is not None and f"{s.context.trace_id:032x}" == TRACE_ID
    ]


@pytest.mark.usefixtures("relay")
async def test_an_http_command_is_one_trace_from_the_api_through_the_ledger_to_the_relay(
    spans: InMemorySpanExporter, client: httpx.AsyncClient, api_settings: Settings
) -> None:
    account_id = f"traced-{uuid.uuid4().hex[:8]}"
    response = await client.post(
        f"/v1/accounts/{account_id}/commands",
        json={"type": "open_account", "command_id": f"{account_id}-1", "plan": "free"},
        headers={"traceparent": TRACEPARENT},
    )
    assert response.status_code == 200, response.text

    events = await _cloud_events(api_settings, account_id, count=1)
    assert events, "the relay published the account's events"
    deadline = time.monotonic() + WITHIN_SECONDS
    while time.monotonic() < deadline:
        kinds = {s.kind for s in _spans_of_trace(spans)}
        if {SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.PRODUCER} <= kinds:
            break
        await asyncio.sleep(0.1)

    traced = _spans_of_trace(spans)
    by_kind = {s.kind: s for s in traced}
    api_span, ledger_span, relay_span = (
        by_kind[SpanKind.SERVER],
        by_kind[SpanKind.CONSUMER],
        by_kind[SpanKind.PRODUCER],
    )
    assert api_span.name == "POST /v1/accounts/{account_id}/commands"
    assert api_span.parent is not None and f"{api_span.parent.span_id:016x}" == CALLER_SPAN_ID
    assert ledger_span.name == "ledger open_account"
    assert ledger_span.parent is not None and api_span.context is not None
    assert ledger_span.parent.span_id == api_span.context.span_id
    assert relay_span.parent is not None and ledger_span.context is not None
    assert relay_span.parent.span_id == ledger_span.context.span_id

    # Every event the command produced carries the ledger span's context.
    ledger_traceparent = f"00-{TRACE_ID}-{ledger_span.context.span_id:016x}-01"
    assert events[0]["traceparent"] == ledger_traceparent
    assert all(e.get("traceparent") == ledger_traceparent for e in events)
    # The contract (docs/asyncapi.json) takes the attribute.
    cloud_event_adapter().validate_json(json.dumps(events[0]))


async def test_a_command_without_a_trace_gets_no_span_and_no_traceparent(
    spans: InMemorySpanExporter, client: httpx.AsyncClient
) -> None:
    account_id = f"untraced-{uuid.uuid4().hex[:8]}"
    spans.clear()
    response = await client.post(
        f"/v1/accounts/{account_id}/commands",
        json={"type": "open_account", "command_id": f"{account_id}-1", "plan": "free"},
    )
    assert response.status_code == 200, response.text
    # The API's span is a root of its own; the ledger's span continues it.
    (server,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.parent is None
