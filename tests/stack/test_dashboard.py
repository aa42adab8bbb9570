"""Every query of the Grafana dashboard (deploy/grafana/credits.json) names metrics the service
exports: those registered on infra.metrics.REGISTRY by the components a process can run."""

from __future__ import annotations

import json
import re
from typing import Any

import services.cli.supervisor  # noqa: F401  (imports every component: their metrics register)
from infra.metrics import REGISTRY
from infra.settings import PROJECT_DIR

DASHBOARD = PROJECT_DIR / "deploy" / "grafana" / "credits.json"

# The series a metric family of each type exposes, by suffix (Prometheus text format).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "unknown": ("",),
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
PROMQL_WORDS |= {"and", "or", "unless", "offset", "le", "inf", "nan"}
_LABELS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, labels left out)."""
    text = _STRINGS.sub(" ", expr)
    text = _LABELS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _RANGE.sub(" ", text)
    names = set()
    for match in _NAME.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("("):  # a function or aggregation
            continue
        if match.group().lower() in PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


def exported_names() -> set[str]:
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in SUFFIXES.get(family.type, ("",))
    }


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) of every target, rows' nested panels included."""
    found = []
    stack = list(dashboard["panels"])
    while stack:
        panel = stack.pop()
        stack.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"]))
    return found


def unknown_names(dashboard: dict[str, Any]) -> dict[str, set[str]]:
    exported = exported_names()
    missing = {}
    for title, expr in dashboard_queries(dashboard):
        names = metric_names(expr)
        assert names, f"{title}: no metric found in {expr!r}"
        if names - exported:
            missing[title] = names - exported
    return missing


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert len(dashboard_queries(dashboard)) >= 20
    assert unknown_names(dashboard) == {}


def test_the_dashboard_charts_what_an_on_call_engineer_needs() -> None:
    read = set().union(
        *(metric_names(e) for _, e in dashboard_queries(json.loads(DASHBOARD.read_text())))
    )
    for needed in (
        "credits_command_seconds_bucket",
        "credits_commands_total",
        "credits_ledger_batch_records_bucket",
        "credits_ledger_batch_seconds_bucket",
        "credits_consumer_lag_records",
        "credits_dlq_messages_total",
        "credits_relay_lag_events",
        "credits_relay_published_events_total",
        "credits_projection_lag_events",
        "credits_scheduler_due_commands",
        "credits_payments_webhooks_total",
        "credits_stripe_request_seconds_bucket",
        "credits_pg_pool_connections",
        "process_resident_memory_bytes",
    ):
        assert needed in read, needed


def test_the_check_finds_names_and_refuses_a_metric_nobody_exports() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, door) (rate(credits_command_seconds_bucket{door="'
        'kafka"}[5m]))) / on (instance) group_left credits_no_such_metric'
    )
    assert metric_names(expr) == {"credits_command_seconds_bucket", "credits_no_such_metric"}
    broken = {"panels": [{"title": "broken", "targets": [{"expr": expr}]}]}
    assert unknown_names(broken) == {"broken": {"credits_no_such_metric"}}
