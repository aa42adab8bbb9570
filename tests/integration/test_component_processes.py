"""Every component, run as production runs it (`credits run NAME`, a process of its own), serves
`/healthz`, `/readyz` and `/metrics` on its ops port; `/readyz` checks the servers that
component needs and says why it is not ready."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from infra.settings import Settings
from tests.faults.component_process import ComponentProcess
from tests.kit.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("pg_database", "kafka_topics")]

# Starting takes a few seconds per process (imports, opening the event store, joining a group),
# longer when all start at once on a busy host.
READY_WITHIN_SECONDS = 120.0
STOP_WITHIN_SECONDS = 30.0

# What each component's /readyz checks, and a metric only it exports.
EXPECTED = {
    "api": ({"postgres", "kafka"}, "credits_http_requests_total"),
    "ledger": ({"postgres", "kafka"}, "credits_ledger_batch_records_bucket"),
    "relay": ({"postgres", "kafka"}, "credits_relay_lag_events"),
    "scheduler": ({"postgres", "kafka"}, "credits_scheduler_due_commands"),
    "projector": ({"postgres"}, "credits_projection_lag_events"),
    "payments": ({"postgres", "kafka"}, "credits_payments_webhooks_total"),
}


def _start(name: str, settings: Settings, log_dir: Path) -> tuple[ComponentProcess, str]:
    own = settings.model_copy(update={"http_port": free_port(), "ops_port": free_port()})
    return ComponentProcess(name, own, log_dir), f"http://127.0.0.1:{own.ops_port}"


def _get(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=10)
    except httpx.TransportError:
        return None


def _wait_for(url: str, process: ComponentProcess, status: int) -> httpx.Response:
    """The first answer of `url` with this status (bounded; fails if the process ended)."""
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        assert process.running(), f"{process.name} ended:\n{process.text()[-3000:]}"
        response = _get(url)
        if response is not None:
            last = response
            if response.status_code == status:
                return response
        time.sleep(0.5)
    seen = last.text if last is not None else "no answer"
    raise AssertionError(f"{process.name}: {url} never answered {status}: {seen}")


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[ComponentProcess]]:
    processes: list[ComponentProcess] = []
    yield processes
    for process in processes:
        if process.running():
            process.terminate(STOP_WITHIN_SECONDS)
        process.kill()


def test_each_component_process_serves_health_readiness_and_its_metrics(
    settings: Settings, tmp_path: Path, started: list[ComponentProcess]
) -> None:
    urls = {}
    for name in EXPECTED:
        process, url = _start(name, settings, tmp_path)
        started.append(process)
        urls[name] = (process, url)

    for name, (process, url) in urls.items():
        needs, metric = EXPECTED[name]
        ready = _wait_for(f"{url}/readyz", process, 200).json()
        assert ready["status"] == "ready"
        assert set(ready["checks"]) == needs, name
        assert all(check["ready"] for check in ready["checks"].values())
        assert name in ready["components"] or name == "api", ready
        alive = _get(f"{url}/healthz")
        assert alive is not None and alive.status_code == 200
        metrics = _get(f"{url}/metrics")
        assert metrics is not None and metrics.status_code == 200
        assert metric in metrics.text, f"{name} does not export {metric}"
        # The process collector: memory, CPU, file descriptors of this process.
        assert "process_resident_memory_bytes" in metrics.text, name
        if name != "api":  # the api has no state of its own besides its servers
            assert f'credits_component_ready{{component="{name}"}} 1.0' in metrics.text

    for process, _ in urls.values():
        _, status = process.terminate(STOP_WITHIN_SECONDS)
        assert status == 0, f"{process.name} exited {status}"


@pytest.mark.parametrize("away", ["postgres", "kafka"])
def test_a_disconnected_ledger_is_not_ready_and_says_why(
    settings: Settings, tmp_path: Path, started: list[ComponentProcess], away: str
) -> None:
    closed = free_port()  # nothing listens there
    update = (
        {"pg_port": closed, "pg_connect_timeout_seconds": 1.0}
        if away == "postgres"
        else {"kafka_bootstrap": f"127.0.0.1:{closed}", "kafka_request_timeout_seconds": 1.0}
    )
    process, url = _start("ledger", settings.model_copy(update=update), tmp_path)
    started.append(process)

    body = _wait_for(f"{url}/readyz", process, 503).json()
    # The ledger's own state is reported too once it has one (it may still be starting).
    deadline = time.monotonic() + READY_WITHIN_SECONDS
    while "ledger" not in body["components"] and time.monotonic() < deadline:
        time.sleep(0.5)
        body = _wait_for(f"{url}/readyz", process, 503).json()

    assert body["status"] == "not_ready"
    assert body["checks"][away]["ready"] is False
    assert body["checks"][away]["detail"], "the reason is given"
    other = "kafka" if away == "postgres" else "postgres"
    assert body["checks"][other]["ready"] is True
    ledger = body["components"]["ledger"]
    assert ledger["ready"] is False and ledger["detail"]
