"""Query and path parameters, checked: a bad one is a 422 `invalid_request` naming it."""

from __future__ import annotations

import re
from datetime import date

from starlette.requests import Request

from services.api.errors import invalid

# The account id rule of the commands (docs/DOMAIN.md).
ACCOUNT_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")


def account_id(request: Request) -> str:
    value = str(request.path_params["account_id"])
    if not ACCOUNT_ID.match(value):
        raise invalid("account_id: 1-128 characters of [A-Za-z0-9_.:@-]")
    return value


def integer(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,18}", raw):
        raise invalid(f"{name}: an integer from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise invalid(f"{name}: an integer from {low} to {high}")
    return value


def day(request: Request, name: str, default: date) -> date:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw):
            raise ValueError(raw)
        return date.fromisoformat(raw)
    except ValueError:
        raise invalid(f"{name}: a date YYYY-MM-DD") from None


def choice(request: Request, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = request.query_params.get(name, default)
    if value not in allowed:
        raise invalid(f"{name}: one of {', '.join(allowed)}")
    return value
