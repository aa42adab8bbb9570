"""Allocation periods: UTC days, and months on the account's anniversary clamped to month ends."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.periods import add_months_clamped, period_containing


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_a_day_period_runs_from_midnight_utc_to_the_next():
    period = period_containing("day", at(2024, 1, 1), at(2024, 3, 5, 23, 59, 59))
    assert (period.start, period.end, period.period_id) == (
        at(2024, 3, 5),
        at(2024, 3, 6),
        "2024-03-05",
    )


def test_an_anniversary_on_the_31st_clamps_to_february_29_in_a_leap_year():
    anchor = at(2024, 1, 31, 10)
    assert add_months_clamped(anchor, 1) == at(2024, 2, 29, 10)
    assert add_months_clamped(anchor, 2) == at(2024, 3, 31, 10), "back to the 31st, no drift"
    assert add_months_clamped(anchor, 3) == at(2024, 4, 30, 10)


def test_an_anniversary_on_the_31st_clamps_to_february_28_otherwise():
    assert add_months_clamped(at(2023, 1, 31), 1) == at(2023, 2, 28)
    assert add_months_clamped(at(2023, 12, 31), 2) == at(2024, 2, 29)


def test_an_anniversary_on_leap_day_renews_on_the_28th_then_the_29th():
    anchor = at(2024, 2, 29, 12)
    assert add_months_clamped(anchor, 12) == at(2025, 2, 28, 12)
    assert add_months_clamped(anchor, 48) == at(2028, 2, 29, 12)
    assert add_months_clamped(anchor, 1) == at(2024, 3, 29, 12)


def test_the_month_period_containing_a_time_starts_at_the_latest_anniversary():
    anchor = at(2024, 1, 31, 10)
    before = period_containing("month", anchor, at(2024, 2, 29, 9, 59, 59))
    assert (before.start, before.end) == (at(2024, 1, 31, 10), at(2024, 2, 29, 10))
    on = period_containing("month", anchor, at(2024, 2, 29, 10))
    assert (on.start, on.end, on.period_id) == (
        at(2024, 2, 29, 10),
        at(2024, 3, 31, 10),
        "2024-02-29",
    )
    assert on.index == before.index + 1
