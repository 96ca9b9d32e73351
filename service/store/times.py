"""Times as both store backends keep them: integer microseconds since the Unix epoch (UTC).

Integers round-trip exactly, compare cheaply and index well. The conversions use integer
timedelta arithmetic, never `datetime.timestamp()`, whose float loses microseconds on
today's dates. Each backend encodes the integer its own way (an SQLite INTEGER, a Redis
string or zset score) on top of these functions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # microsecond 0
MICROSECOND = timedelta(microseconds=1)


def to_us(when: datetime) -> int:
    """`when` (an aware datetime) as whole microseconds since EPOCH, exactly."""
    return (when - EPOCH) // MICROSECOND


def from_us(us: int) -> datetime:
    """The UTC datetime `us` microseconds after EPOCH; the inverse of `to_us`."""
    return EPOCH + timedelta(microseconds=us)


def to_us_or_none(when: datetime | None) -> int | None:
    """`to_us` of an optional time: None stays None."""
    return None if when is None else to_us(when)


def from_us_or_none(us: int | None) -> datetime | None:
    """`from_us` of an optional value: None stays None."""
    return None if us is None else from_us(us)
