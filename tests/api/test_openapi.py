"""The OpenAPI document: docs/openapi.json is what the app serves at /openapi.json (regenerate
it with `credits openapi > docs/openapi.json` when this fails), it lists every route the app
serves, and /docs renders it with assets served by the app itself (no CDN)."""

from __future__ import annotations

import re

import httpx

from contracts.openapi import OPENAPI_PATH, openapi_document, render
from infra.settings import Settings
from services.api.app import create_app
from services.api.route_table import served_routes
from services.cli.main import main

# Served for people, not part of the API: the document itself and its viewer, the Plan & Usage
# page and its assets.
NOT_DOCUMENTED = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/"),
    ("GET", "/portal/{asset}"),
}


def test_the_openapi_file_is_what_the_code_generates():
    assert OPENAPI_PATH.read_text(encoding="utf-8") == render(openapi_document()), (
        "docs/openapi.json is stale: run `credits openapi > docs/openapi.json`"
    )


def test_credits_openapi_prints_the_document(capsys, logging_restored):
    assert main(["openapi"]) == 0
    assert capsys.readouterr().out == render(openapi_document())


def test_every_route_the_app_serves_is_in_the_document(settings: Settings):
    app = create_app(settings)
    served = (
        {(method, route.path) for route in served_routes(app) for method in route.methods}
        - {("HEAD", route.path) for route in served_routes(app)}
        - NOT_DOCUMENTED
    )
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    assert served == documented
    assert {("POST", "/v1/checkout"), ("POST", "/webhooks/stripe")} <= documented


async def test_the_app_serves_the_document_and_docs_without_a_cdn(settings: Settings):
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        document = await client.get("/openapi.json")
        docs = await client.get("/docs")
        assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
        fetched = [await client.get(asset) for asset in assets]
    assert document.status_code == 200 and document.json() == openapi_document()
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert "http://" not in docs.text and "https://" not in docs.text, "nothing from outside"
    assert len(assets) == 3, assets  # script, style sheet, icon
    assert all(a.startswith("/docs/assets/") for a in assets)
    assert [f.status_code for f in fetched] == [200, 200, 200]
    assert b"SwaggerUIBundle" in fetched[[a.endswith(".js") for a in assets].index(True)].content


def test_every_error_response_has_the_error_shape():
    shapes = {"ApiError", "Reply", "CommandTimeoutError"}
    for path, operations in openapi_document()["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and path != "/healthz":
                    schema = response["content"]["application/json"]["schema"]
                    named = {s["$ref"].rsplit("/", 1)[1] for s in schema.get("anyOf", [schema])}
                    assert named <= shapes, (method, path, status, named)
