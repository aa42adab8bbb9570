"""Days from query strings, and day arithmetic that stays inside the calendar.

`datetime.date` spans years 1 to 9999; a query may name either end (`to=0001-01-03`) and a
balance may last longer than the calendar (10^18 credits at 1 a day). Arithmetic that left the
calendar raised OverflowError, a 500: these helpers clamp or answer "never" instead.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from services.api.errors import invalid

# A query's days: `from`..`to` spans this many days when `from` is absent, and at most this many.
DEFAULT_QUERY_DAYS = 30
MAX_QUERY_DAYS = 366


def parse_day(name: str, raw: str | None) -> date | None:
    """`raw` as a date (YYYY-MM-DD), None if absent; a 422 naming the parameter if malformed."""
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise invalid(f"{name}: a date YYYY-MM-DD") from None


def days_before(day: date, days: int) -> date:
    """`day` minus `days`, or the calendar's first day if that is before it."""
    if days >= (day - date.min).days:
        return date.min
    return day - timedelta(days=days)


def days_after(day: date, days: int) -> date | None:
    """`day` plus `days`, or None if that is past the calendar's last day."""
    if days > (date.max - day).days:
        return None
    return day + timedelta(days=days)


def day_range(
    first_raw: str | None, last_raw: str | None, *, today: date, default_days: int, max_days: int
) -> tuple[date, date]:
    """The inclusive days `from`..`to` of a query: `to` defaults to today, `from` to
    `default_days` days ending at `to`; 422 if reversed or longer than `max_days`."""
    last = parse_day("to", last_raw) or today
    first = parse_day("from", first_raw) or days_before(last, default_days - 1)
    if first > last:
        raise invalid("from: must not be after to")
    if (last - first).days >= max_days:
        raise invalid(f"from..to: at most {max_days} days")
    return first, last


def query_days(first_raw: str | None, last_raw: str | None) -> tuple[date, date]:
    """`day_range` of a read's `from` and `to`, with the reads' defaults, ending today (UTC)."""
    return day_range(
        first_raw,
        last_raw,
        today=datetime.now(UTC).date(),
        default_days=DEFAULT_QUERY_DAYS,
        max_days=MAX_QUERY_DAYS,
    )
