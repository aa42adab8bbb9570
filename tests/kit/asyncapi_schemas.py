"""Checks a JSON value against a schema of an AsyncAPI document, with `jsonschema`.

AsyncAPI 3.0's default schema format (the one docs/asyncapi.json uses: its messages name no
`schemaFormat`) is a superset of JSON Schema Draft 07, so the documents' schemas are checked as
Draft 07. `$ref`s point into the document (`#/components/schemas/...`): the whole document is
registered as the resource they resolve in. Keywords the draft does not know would be ignored
by a validator; `unknown_keywords` lets a test refuse them, so that the document cannot outgrow
what is checked without anyone noticing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7

_DOCUMENT_URI = "urn:credits:asyncapi"
# AsyncAPI's own annotation on top of Draft 07: which property tells the `oneOf` branches apart.
ASYNCAPI_KEYWORDS = frozenset({"discriminator"})


def schema_errors(value: Any, document: dict[str, Any], schema: str) -> list[str]:
    """What is wrong with `value` under the document's `components.schemas[schema]`; []
    when it conforms."""
    registry: Registry[Any] = Registry().with_resource(
        _DOCUMENT_URI, DRAFT7.create_resource(document)
    )
    validator = Draft7Validator(
        {"$ref": f"{_DOCUMENT_URI}#/components/schemas/{schema}"}, registry=registry
    )
    return [
        f"{error.json_path}: {error.message}"
        for error in sorted(validator.iter_errors(value), key=str)
    ]


def unknown_keywords(document: dict[str, Any]) -> set[str]:
    """Keywords of the document's schemas that neither Draft 07 nor AsyncAPI defines."""
    known = set(Draft7Validator.META_SCHEMA["properties"]) | ASYNCAPI_KEYWORDS
    return {
        k for schema in document["components"]["schemas"].values() for k in _keywords(schema)
    } - known


def _keywords(schema: Any) -> Iterator[str]:
    if not isinstance(schema, dict):
        return
    for keyword, rule in schema.items():
        yield keyword
        if keyword in {"properties", "patternProperties", "definitions"}:
            for sub in rule.values():
                yield from _keywords(sub)
        elif keyword in {"items", "anyOf", "oneOf", "allOf"} and isinstance(rule, list):
            for sub in rule:
                yield from _keywords(sub)
        elif isinstance(rule, dict) and keyword not in {"discriminator", "default", "const"}:
            yield from _keywords(rule)
