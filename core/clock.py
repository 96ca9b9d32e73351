"""The one clock type: a function that answers the current time in UTC. Components that read
the time take a `Clock` (default `utc_now`), so that tests can set it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
