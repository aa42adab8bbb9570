"""The OpenAPI document, generated from the routes' declarations and the pydantic models.

`python -m services.api.openapi` writes docs/openapi.json; a test fails when that file differs
from what the code generates.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter
from starlette.requests import Request
from starlette.responses import Response

from infra.settings import PROJECT_DIR

OPENAPI_PATH = PROJECT_DIR / "docs" / "openapi.json"
REF = "#/components/schemas/{model}"

Handler = Callable[[Request], Awaitable[Response]]
Schema = type[BaseModel] | TypeAdapter[Any]


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # path or query
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    handler: Handler
    params: tuple[Param, ...] = ()
    body: tuple[str, Schema] | None = None
    # status -> (description, schema or None for a body that is not JSON)
    responses: dict[int, tuple[str, Schema | None]] = field(default_factory=dict)
    media_type: str = "application/json"


def build_openapi(operations: list[Operation], version: str) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "responses": {
                str(status): _response(description, schema, op.media_type, schemas)
                for status, (description, schema) in sorted(op.responses.items())
            },
        }
        if op.params:
            entry["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "description": p.description,
                    "schema": p.schema,
                }
                for p in op.params
            ]
        if op.body is not None:
            name, schema = op.body
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": _ref(name, schema, schemas)}},
            }
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "credits",
            "version": version,
            "description": "Event-sourced credit ledger: reads, commands, health. "
            "Errors are JSON {error: {code, message}}; see docs/READ_MODELS.md.",
        },
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items()))},
    }


def _response(
    description: str, schema: Schema | None, media_type: str, schemas: dict[str, Any]
) -> dict[str, Any]:
    if schema is None:
        return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}
    name = schema.__name__ if isinstance(schema, type) else "Command"
    return {
        "description": description,
        "content": {"application/json": {"schema": _ref(name, schema, schemas)}},
    }


def _ref(name: str, schema: Schema, schemas: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema, type):
        generated = schema.model_json_schema(ref_template=REF, mode="serialization")
    else:
        generated = schema.json_schema(ref_template=REF, mode="validation")
    for def_name, definition in generated.pop("$defs", {}).items():
        schemas[def_name] = definition
    schemas[name] = generated
    return {"$ref": REF.format(model=name)}


def write_openapi(document: dict[str, Any]) -> None:
    OPENAPI_PATH.write_text(render(document), encoding="utf-8")


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=False) + "\n"


def main() -> int:
    from services.api.app import openapi_document

    write_openapi(openapi_document())
    print(f"wrote {OPENAPI_PATH.relative_to(PROJECT_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
