"""The one retry helper: what it tells `on_state` while an operation fails and once it ends."""

from __future__ import annotations

import asyncio

import pytest

from infra.retry import Backoff, retry

QUICK = Backoff(first_seconds=0.001, max_seconds=0.001)


class Away(Exception):
    """A failure worth retrying (the server is away)."""


class Conflict(Exception):
    """An outcome retrying cannot change."""


def _attempts(*outcomes: BaseException | str):
    remaining = list(outcomes)

    async def attempt() -> str:
        outcome = remaining.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return attempt


def test_failing_then_succeeding_reports_failing_once_then_recovered() -> None:
    states: list[bool] = []
    result = asyncio.run(
        retry(
            _attempts(Away(), Away(), "done"),
            doing="saving",
            retry_on=(Away,),
            backoff=QUICK,
            on_state=lambda ok, _: states.append(ok),
        )
    )
    assert result == "done"
    assert states == [False, True]


def test_failing_then_ending_in_an_error_not_retried_reports_recovered_and_raises_it() -> None:
    """A batch committed just before its connection broke comes back as a conflict: the
    database answered, so whoever reported "failing" must hear that it is over."""
    states: list[bool] = []
    with pytest.raises(Conflict):
        asyncio.run(
            retry(
                _attempts(Away(), Conflict()),
                doing="saving",
                retry_on=(Away,),
                backoff=QUICK,
                on_state=lambda ok, _: states.append(ok),
            )
        )
    assert states == [False, True]


def test_an_error_not_retried_at_once_reports_nothing() -> None:
    states: list[bool] = []
    with pytest.raises(Conflict):
        asyncio.run(
            retry(
                _attempts(Conflict()),
                doing="saving",
                retry_on=(Away,),
                backoff=QUICK,
                on_state=lambda ok, _: states.append(ok),
            )
        )
    assert states == []
