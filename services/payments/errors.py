"""Why a Stripe event, top-up request or ledger reply could not be handled (stable codes).

`BadInput` goes to the DLQ at once (retrying cannot fix it), with a code of the one DLQ code
list (`infra.dlq.DlqCode`).
"""

from __future__ import annotations

from enum import StrEnum

from infra.dlq import DlqCode


class CodedError(Exception):
    """A refusal with a stable code (an enum value) and a message for people."""

    def __init__(self, code: StrEnum, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BadInput(CodedError):
    code: DlqCode
