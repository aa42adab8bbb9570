"""Day arithmetic of the reads stays inside the calendar: any query day and any balance answer
a day, "never" or a 422, never a 500 (an OverflowError)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api.day_range import day_range, days_after, days_before
from services.api.errors import HttpError
from services.api.overview import _run_out

days = st.dates(min_value=date.min, max_value=date.max)


@given(day=days, count=st.integers(min_value=0, max_value=10**30))
def test_days_before_and_after_never_leave_the_calendar(day: date, count: int) -> None:
    before = days_before(day, count)
    after = days_after(day, count)

    assert before <= day
    assert before == date.min or (day - before).days == count
    assert after is None or (after - day).days == count
    assert after is not None or (date.max - day).days < count


@given(first=st.none() | days, last=st.none() | days)
def test_a_query_range_is_a_range_or_a_422(first: date | None, last: date | None) -> None:
    raw_first = None if first is None else first.isoformat()
    raw_last = None if last is None else last.isoformat()
    try:
        start, end = day_range(
            raw_first, raw_last, today=date(2026, 12, 2), default_days=30, max_days=366
        )
    except HttpError as error:
        assert error.status == 422
        return
    assert start <= end
    assert (end - start).days < 366


def test_the_default_range_ending_on_the_calendars_first_days_starts_on_its_first() -> None:
    assert day_range(
        None, "0001-01-03", today=date(2026, 12, 2), default_days=30, max_days=366
    ) == (
        date.min,
        date(1, 1, 3),
    )


@given(
    spendable=st.integers(min_value=0, max_value=10**30),
    rate_per_day=st.integers(min_value=1, max_value=10**6),
    today=days,
)
def test_a_balance_that_outlasts_the_calendar_never_runs_out(
    spendable: int, rate_per_day: int, today: date
) -> None:
    runs_out_on, _ = _run_out(spendable, rate_per_day, today, None)

    if runs_out_on is None:
        assert spendable // rate_per_day > (date.max - today).days
    else:
        assert (runs_out_on - today).days == spendable // rate_per_day


@pytest.mark.parametrize("reset", [None, datetime(2027, 1, 1, tzinfo=UTC)])
def test_a_huge_balance_at_one_credit_a_day_is_not_an_error(reset: datetime | None) -> None:
    assert _run_out(10**18, 1, date(2026, 12, 2), reset) == (None, False)
