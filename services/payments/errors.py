"""Why a Stripe event or top-up message could not be turned into commands (stable codes).

`BadInput` goes to the DLQ at once (retrying cannot fix it); `Transient` is retried a bounded
number of times, then goes to the DLQ as `retries_exhausted`.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    invalid_json = "invalid_json"
    invalid_stripe_event = "invalid_stripe_event"
    invalid_metadata = "invalid_metadata"
    invalid_cloud_event = "invalid_cloud_event"
    invalid_command = "invalid_command"
    retries_exhausted = "retries_exhausted"


class CodedError(Exception):
    """A refusal with a stable code (an enum value) and a message for people."""

    def __init__(self, code: StrEnum, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BadInput(CodedError):
    code: ErrorCode


class Transient(Exception):
    """A dependency (Stripe, PostgreSQL) failed in a way a later attempt may not."""
