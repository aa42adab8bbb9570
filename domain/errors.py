"""The stable error codes of the reply contract (DESIGN §2.3), and the exception carrying them."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    insufficient_credits = "insufficient_credits"
    daily_limit_reached = "daily_limit_reached"
    resource_limit_reached = "resource_limit_reached"
    unknown_account = "unknown_account"
    account_exists = "account_exists"
    unknown_action = "unknown_action"
    unknown_plan = "unknown_plan"
    not_eligible = "not_eligible"
    invalid_command = "invalid_command"
    hold_not_found = "hold_not_found"
    hold_expired = "hold_expired"
    hold_limit_reached = "hold_limit_reached"
    limit_above_plan = "limit_above_plan"
    idempotency_conflict = "idempotency_conflict"


class LedgerError(Exception):
    """A command the ledger refuses. Raising it must leave the account unchanged."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
