"""Allocation periods: a UTC day, or a month anchored on the account's anniversary.

Monthly periods are computed from the anchor every time, never from the previous period, so
that an account opened on the 31st renews on Feb 28 (or 29) and then again on Mar 31, not Mar 28.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

PeriodKind = Literal["day", "month"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Period:
    kind: PeriodKind
    index: int
    start: datetime
    end: datetime

    @property
    def period_id(self) -> str:
        """The period's start date: what `renew` names and what renewals are idempotent on."""
        return self.start.date().isoformat()


def add_months_clamped(anchor: datetime, months: int) -> datetime:
    """The anchor moved by `months`, its day clamped to the target month's last day."""
    year, month_zero_based = divmod(anchor.year * 12 + anchor.month - 1 + months, 12)
    month = month_zero_based + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_containing(kind: PeriodKind, anchor: datetime, at: datetime) -> Period:
    """The period of the given kind that contains `at` (start inclusive, end exclusive)."""
    assert at.tzinfo is not None and anchor.tzinfo is not None
    if kind == "day":
        index = (at - _EPOCH).days
        start = _EPOCH + timedelta(days=index)
        return Period(kind, index, start, start + timedelta(days=1))
    index = (at.year - anchor.year) * 12 + (at.month - anchor.month)
    if add_months_clamped(anchor, index) > at:
        index -= 1
    start = add_months_clamped(anchor, index)
    end = add_months_clamped(anchor, index + 1)
    assert start <= at < end
    return Period(kind, index, start, end)


def calendar_month(at: datetime) -> str:
    """The UTC calendar month, e.g. `2024-02`: the window of auto top-up caps."""
    return f"{at.year:04d}-{at.month:02d}"


def utc_day(at: datetime) -> str:
    """The UTC date, e.g. `2024-02-29`: the window of daily caps."""
    return at.astimezone(UTC).date().isoformat()
