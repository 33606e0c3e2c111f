"""FHIR date and dateTime values as aware datetimes (partial dates allowed)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

_PARTIAL_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
# Clinical data outside these years is an error or a placeholder ("0001-01-01", "9999-12-31"),
# and near datetime.min/max it would overflow on conversion to UTC or on a window shift.
EARLIEST_YEAR = 1800
LATEST_YEAR = 2200


def parse_fhir_datetime(value: object) -> datetime | None:
    """Parse a FHIR date/dateTime/instant; None when it is not one.

    Partial dates (``2019``, ``2019-03``, ``2019-03-04``) become the start of that period in UTC,
    and a time without an offset is taken as UTC (FHIR requires an offset when time is given).
    A year outside ``EARLIEST_YEAR``..``LATEST_YEAR`` (as written or in UTC) is not a usable
    time: None, so no arithmetic on it can overflow.
    """
    if not isinstance(value, str):
        return None
    return _parse(value)


@lru_cache(maxsize=65536)
def _parse(value: str) -> datetime | None:
    match = _PARTIAL_DATE.match(value)
    if match:
        year, month, day = match.groups()
        if not _plausible_year(int(year)):
            return None
        try:
            return datetime(int(year), int(month or 1), int(day or 1), tzinfo=UTC)
        except ValueError:
            return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        in_utc = parsed.astimezone(UTC)
    except OverflowError:
        return None
    if not _plausible_year(parsed.year) or not _plausible_year(in_utc.year):
        return None
    return parsed


def _plausible_year(year: int) -> bool:
    return EARLIEST_YEAR <= year <= LATEST_YEAR


def lookback_start(index_time: datetime, days: float) -> datetime | None:
    """``index_time`` minus ``days``; None (an unbounded window) when that falls before the
    first representable instant, since every representable time is then inside the window."""
    try:
        return index_time - timedelta(days=days)
    except OverflowError:
        return None


def end_of_partial(value: str) -> datetime | None:
    """The last instant covered by a partial date (``2019-03`` → end of March 2019)."""
    start = parse_fhir_datetime(value)
    if start is None:
        return None
    match = _PARTIAL_DATE.match(value)
    if not match:
        return start
    _, month, day = match.groups()
    try:
        if day:
            return start + timedelta(days=1) - timedelta(microseconds=1)
        if month:
            next_month = datetime(
                start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC
            )
            return next_month - timedelta(microseconds=1)
        return datetime(start.year + 1, 1, 1, tzinfo=UTC) - timedelta(microseconds=1)
    except (OverflowError, ValueError):
        return datetime.max.replace(tzinfo=UTC)
