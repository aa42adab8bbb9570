"""docs/openapi.json is what the code generates: regenerate it with
`python -m services.api.openapi` when this fails."""

from __future__ import annotations

from services.api.app import OPERATIONS, create_app, openapi_document
from services.api.openapi import OPENAPI_PATH, render


def test_the_openapi_file_is_what_the_code_generates():
    assert OPENAPI_PATH.read_text(encoding="utf-8") == render(openapi_document()), (
        "docs/openapi.json is stale: run `python -m services.api.openapi`"
    )


def test_every_route_of_the_app_is_documented(settings):
    documented = {(op.method, op.path) for op in OPERATIONS}
    app = create_app(settings)
    served = {
        (m, getattr(r, "path", "")) for r in app.routes for m in getattr(r, "methods", ()) or ()
    } - {("HEAD", p) for _, p in documented}
    assert served == documented
    paths = openapi_document()["paths"]
    assert {(m.upper(), p) for p, ops in paths.items() for m in ops} == documented
