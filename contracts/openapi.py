"""The OpenAPI document of the API, as `GET /openapi.json` serves it and docs/openapi.json holds
it: `credits openapi > docs/openapi.json` writes it; a test fails when the file is stale."""

from __future__ import annotations

import json
from typing import Any

from infra.settings import PROJECT_DIR, Settings
from services.api.app import create_app

OPENAPI_PATH = PROJECT_DIR / "docs" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    document: dict[str, Any] = create_app(Settings()).openapi()
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"
