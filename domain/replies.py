"""The reply of DESIGN §2.3: `{command_id, account_id, status, error, balances, result}`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from domain.errors import ErrorCode, LedgerError
from domain.results import CommandResult


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Balance(_Model):
    available: int
    # What the account's plan may spend now: `available` less purchased credits its plan may
    # not spend (a consume may still overdraw by the credit type's floor).
    spendable: int
    held: int
    allocation_remaining: int
    purchased_remaining: int
    next_reset_at: datetime | None


class ErrorBody(_Model):
    code: ErrorCode
    message: str


class Reply(_Model):
    command_id: str
    account_id: str
    status: Literal["accepted", "rejected", "duplicate"]
    error: ErrorBody | None = None
    balances: dict[str, Balance] = {}
    result: dict[str, Any] = {}
    # Notification id of the command's last event; None when it wrote none (or in a duplicate).
    position: int | None = None

    @classmethod
    def accepted(
        cls,
        *,
        command_id: str,
        account_id: str,
        balances: dict[str, dict[str, Any]],
        result: CommandResult,
    ) -> Reply:
        return cls(
            command_id=command_id,
            account_id=account_id,
            status="accepted",
            balances={ct: Balance(**b) for ct, b in balances.items()},
            result=result.to_json(),
        )

    @classmethod
    def rejected(
        cls,
        *,
        command_id: str,
        account_id: str,
        error: LedgerError,
        balances: dict[str, dict[str, Any]] | None = None,
    ) -> Reply:
        return cls(
            command_id=command_id,
            account_id=account_id,
            status="rejected",
            error=ErrorBody(code=error.code, message=error.message),
            balances={ct: Balance(**b) for ct, b in (balances or {}).items()},
        )
