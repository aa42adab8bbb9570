"""No input gives a 500: arbitrary methods, paths, query strings, headers and bodies, straight
into the app's ASGI interface (no HTTP client to tidy them up), with and without a valid key;
every error keeps the `{error: {code, message}}` shape."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.keys import Scope

pytestmark = pytest.mark.integration

ACCOUNT = "fuzz-acct"
TEMPLATES = [
    "/v1/accounts/{a}",
    "/v1/accounts/{a}/usage",
    "/v1/accounts/{a}/transactions",
    "/v1/accounts/{a}/commands",
    "/v1/accounts/{a}/commands/{a}",
    "/v1/portal-tokens",
    "/v1/checkout",
    "/v1/ops/projections",
    "/webhooks/stripe",
    "/healthz",
    "/openapi.json",
    "/{a}",
]
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
segment = st.one_of(st.just(ACCOUNT), st.sampled_from(["..", ".", "%", "a/b", "\x00"]), text)
paths = st.builds(
    lambda template, a: template.replace("{a}", a), st.sampled_from(TEMPLATES), segment
)
header_bytes = st.binary(max_size=60).filter(lambda b: b"\r" not in b and b"\n" not in b)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)
commands = st.fixed_dictionaries(
    {"type": st.sampled_from(["consume", "grant", "open_account", "request_top_up", "x"])},
    optional={"command_id": text, "account_id": text, "action": text, "amount": st.integers()},
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    commands.map(lambda v: json.dumps(v).encode()),
    st.integers(1, 100_000).map(lambda depth: b"[" * depth + b"]" * depth),
    st.integers(1, 100_000).map(lambda depth: b'{"a":' * depth + b"1" + b"}" * depth),
    st.just(b"\xff\xfe{}"),
    st.just(b'{"type": "consume", "command_id": "\\ud800"}'),
    st.integers(16_000, 300_000).map(lambda n: b'"' + b"x" * n + b'"'),
)


async def _asgi(app: Any, method: str, path: str, query: bytes, headers: list, body: bytes):
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": quote(path, safe="/%").encode("ascii"),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)] or [b""]
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), content


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
    path=paths,
    query=st.binary(max_size=80),
    extra_headers=st.lists(st.tuples(header_bytes, header_bytes), max_size=4),
    content_type=st.sampled_from([b"application/json", b"text/plain", b"", b"\xff"]),
    authorization=st.sampled_from(["admin", "read", "none", "garbage", "portal"]),
    body=bodies,
)
async def test_no_input_gives_a_500_and_every_error_has_the_shape(
    api, scope_keys, method, path, query, extra_headers, content_type, authorization, body
):
    headers = [(b"content-type", content_type), *extra_headers]
    credential = {
        "admin": scope_keys[Scope.admin],
        "read": scope_keys[Scope.read],
        "garbage": "ck_" + "0" * 16 + "." + "x" * 43,
        "portal": "pt_e30." + "A" * 43,
    }.get(authorization)
    if credential is not None:
        headers.append((b"authorization", f"Bearer {credential}".encode()))
    status, response_headers, content = await _asgi(api, method, path, query, headers, body)

    assert status < 500 or status in (503, 504), (status, content[:300])
    if status >= 400 and method != "HEAD" and path != "/healthz":
        assert response_headers.get(b"content-type") == b"application/json", (status, path)
        error = json.loads(content)["error"]
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]
    if status == 405:
        assert response_headers[b"allow"]
    if status == 503:
        assert int(response_headers[b"retry-after"]) > 0


async def test_a_405_names_the_methods_of_a_path_holding_control_characters(api):
    # Found by the fuzz test above: the path routing matched was not the one the Allow header
    # was computed from (a URL parser drops tabs and newlines).
    for path in ("/v1/accounts/\n", "/v1/accounts/a\tb"):
        status, headers, _ = await _asgi(api, "POST", path, b"", [], b"{}")
        assert status == 405
        assert headers[b"allow"] == b"GET", path
