"""Checks a JSON value against the JSON Schema keywords docs/asyncapi.json uses.

`jsonschema` is not installed in this project, so the tests check real messages against the
document itself with this subset; a keyword it does not know fails the check instead of being
skipped, so the document cannot outgrow it silently. Formats (date-time) are not checked.
"""

from __future__ import annotations

import re
from typing import Any

_ANNOTATIONS = {"title", "description", "default", "format", "examples", "discriminator"}
_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "integer": int,
    "boolean": bool,
    "null": type(None),
}


def problems(
    value: Any, schema: dict[str, Any], schemas: dict[str, Any], at: str = ""
) -> list[str]:
    """What is wrong with `value` under `schema` ($refs into `schemas`); [] when it conforms."""
    found: list[str] = []
    for keyword, rule in schema.items():
        if keyword in _ANNOTATIONS or keyword in ("properties", "additionalProperties"):
            continue
        found += _check(keyword, rule, value, schema, schemas, at)
    if isinstance(value, dict) and ("properties" in schema or "additionalProperties" in schema):
        found += _check_object(value, schema, schemas, at)
    return found


def _check(
    keyword: str, rule: Any, value: Any, schema: dict[str, Any], schemas: dict[str, Any], at: str
) -> list[str]:
    if keyword == "$ref":
        return problems(value, schemas[rule.rsplit("/", 1)[1]], schemas, at)
    if keyword == "type":
        ok = isinstance(value, _TYPES[rule]) and not (rule == "integer" and isinstance(value, bool))
        return [] if ok else [f"{at or '/'}: not {rule}"]
    if keyword == "oneOf" and "discriminator" in schema:
        # AsyncAPI: the discriminator names a property whose `const` picks the branch.
        name = schema["discriminator"]
        tag = value.get(name) if isinstance(value, dict) else None
        branches = [
            ref for ref in rule if _resolve(ref, schemas)["properties"][name].get("const") == tag
        ]
        if len(branches) != 1:
            return [f"{at or '/'}: no single schema for {name} {tag!r}"]
        return problems(value, branches[0], schemas, at)
    if keyword in ("anyOf", "oneOf"):
        matches = [s for s in rule if not problems(value, s, schemas, at)]
        ok = bool(matches) if keyword == "anyOf" else len(matches) == 1
        return [] if ok else [f"{at or '/'}: matches {len(matches)} of {keyword}"]
    checks = {
        "const": lambda: value == rule,
        "enum": lambda: value in rule,
        "required": lambda: not isinstance(value, dict) or all(k in value for k in rule),
        "minimum": lambda: not isinstance(value, int) or value >= rule,
        "maximum": lambda: not isinstance(value, int) or value <= rule,
        "minLength": lambda: not isinstance(value, str) or len(value) >= rule,
        "maxLength": lambda: not isinstance(value, str) or len(value) <= rule,
        "pattern": lambda: not isinstance(value, str) or re.search(rule, value) is not None,
        "maxProperties": lambda: not isinstance(value, dict) or len(value) <= rule,
        "propertyNames": lambda: (
            not isinstance(value, dict) or all(not problems(k, rule, schemas) for k in value)
        ),
        "items": lambda: (
            not isinstance(value, list) or all(not problems(v, rule, schemas) for v in value)
        ),
    }
    if keyword not in checks:
        raise AssertionError(f"keyword {keyword!r} is not supported by this checker")
    return [] if checks[keyword]() else [f"{at or '/'}: fails {keyword} {rule!r}"]


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _check_object(
    value: dict[str, Any], schema: dict[str, Any], schemas: dict[str, Any], at: str
) -> list[str]:
    found: list[str] = []
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties", True)
    for key, item in value.items():
        if key in properties:
            found += problems(item, properties[key], schemas, f"{at}/{key}")
        elif extra is False:
            found.append(f"{at}/{key}: not allowed")
        elif isinstance(extra, dict):
            found += problems(item, extra, schemas, f"{at}/{key}")
    return found
