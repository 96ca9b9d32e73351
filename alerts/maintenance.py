"""Maintenance windows: recurring (weekdays at a local time, in a time zone) or one-off
spans during which matching alerts are muted. Times are computed in UTC from the window's
zone, so windows cross midnight and DST changes correctly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from alerts.model import matches


class WindowSpec(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def start(self) -> str: ...
    @property
    def duration(self) -> float: ...
    @property
    def match(self) -> Mapping[str, str]: ...
    @property
    def every(self) -> Sequence[str]: ...
    @property
    def timezone(self) -> str: ...


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def window_span(w: WindowSpec, now: datetime) -> tuple[datetime, datetime] | None:
    """The (start, end) in UTC of the occurrence of `w` that contains `now`, or None.

    Recurring windows start at `start` local time in `w.timezone` on each `every` weekday
    (every day when empty) and last `duration` seconds of real time, so they may cross
    midnight and DST changes. A start inside the spring-forward gap keeps the offset from
    before the jump (02:30 on that day begins at 03:30 summer time); an ambiguous start in
    autumn takes its first occurrence. A one-off `start` is a date-time in `w.timezone`
    unless it carries its own offset.
    """
    tz = ZoneInfo(w.timezone)
    length = timedelta(seconds=w.duration)
    if "T" in w.start:
        begin = datetime.fromisoformat(w.start)
        candidates = [begin if begin.tzinfo else begin.replace(tzinfo=tz)]
    else:
        at = time(int(w.start[:2]), int(w.start[3:5]))
        today = now.astimezone(tz).date()
        days = [today - timedelta(days=back) for back in range(math.ceil(w.duration / 86400) + 2)]
        candidates = [datetime.combine(day, at, tzinfo=tz) for day in days
                      if not w.every or WEEKDAYS[day.weekday()] in w.every]
    for local in candidates:
        start = local.astimezone(UTC)  # UTC first: aware arithmetic in one zone is wall-clock
        if start <= now < start + length:
            return start, start + length
    return None


def in_window(w: WindowSpec, labels: Mapping[str, str], now: datetime) -> bool:
    """Whether `w` covers an alert with `labels` at `now`."""
    return matches(w.match, labels) and window_span(w, now) is not None
