"""Request bodies read by hand (commands, checkout, the webhook): bounded, then parsed strictly.

The size is checked before reading (`Content-Length`) and while reading (chunked bodies), so a
huge body costs at most the limit: 413 `payload_too_large`. JSON is parsed with pydantic's
parser (jiter): bytes that are not UTF-8, lone surrogates, NaN and nesting deeper than its
recursion limit (200) are refused with 400 `invalid_json`, never a 500.
"""

from __future__ import annotations

from typing import Any

import pydantic_core
from fastapi import Request
from starlette.requests import ClientDisconnect

from services.api.errors import INVALID_JSON, PAYLOAD_TOO_LARGE, HttpError


async def read_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes)
            chunks.append(chunk)
    except ClientDisconnect:
        raise HttpError(400, INVALID_JSON, "body: the client disconnected") from None
    return b"".join(chunks)


def too_large(max_bytes: int) -> HttpError:
    return HttpError(413, PAYLOAD_TOO_LARGE, f"body: at most {max_bytes} bytes")


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        value = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as error:
        raise HttpError(400, INVALID_JSON, f"body: not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise HttpError(400, INVALID_JSON, "body: not a JSON object")
    return value


async def read_json_object(request: Request, max_bytes: int) -> dict[str, Any]:
    return parse_json_object(await read_body(request, max_bytes))
