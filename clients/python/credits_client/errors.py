"""What a `CreditsClient` call raises besides returning a `Reply`."""

from __future__ import annotations


class CommandTimeout(TimeoutError):
    """No reply within the call's bound. The command may still be applied (or may be later):
    retry it with the SAME `command_id`, and the ledger answers `duplicate` with the original
    result instead of applying it twice."""

    def __init__(self, command_id: str, correlation_id: str, timeout_seconds: float) -> None:
        super().__init__(
            f"no reply to command {command_id!r} within {timeout_seconds:g} s "
            f"(correlation_id {correlation_id}); retry with the same command_id"
        )
        self.command_id = command_id
        self.correlation_id = correlation_id
        self.timeout_seconds = timeout_seconds


class CommandNotSent(CommandTimeout):
    """The call's bound passed before the brokers acknowledged the command (Kafka is down or
    slow). Most likely it was never written, so nothing happened; it may have been written
    after all, so the same rule holds: retry with the SAME `command_id`."""


class ClientClosed(RuntimeError):
    """The client is not started, was stopped, or its reply reader failed."""


class InvalidCommand(ValueError):
    """Refused before sending: the ledger would answer `invalid_command` with this message."""


class InvalidReply(RuntimeError):
    """A reply matched a call by correlation id but is not the reply to that command."""
