"""How fast the dispatcher may and can send to an endpoint. `RateLimit` is the endpoint's own
`rate_limit`. `Pacing` says how long an endpoint will take to get to a new claim, so that
what a slow endpoint cannot start soon is put off instead of held: a slow customer's backlog
must hold neither the dispatcher's claims nor the queue order other endpoints' work waits in.

Per endpoint: a running average of attempt durations (with the concurrency and rate limits,
its pace) and the latest time its put-off claims were given, so a backlog comes back spread
along when the endpoint can take it: each delivery claimed again once, not over and over.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from datetime import datetime, timedelta

from service.models import MAX_RATE_LIMIT, MIN_RATE_LIMIT, Endpoint

WEIGHT = 0.2  # of the newest attempt in the running average
UNTIMED_PUT_OFF = 0.5  # seconds: an endpoint's overflow before any of its attempts is timed


def usable_rate(rate_limit: float | None) -> float | None:
    """The rate limit to pace by: None (unlimited) for none or NaN, else the stored value
    clamped into [MIN_RATE_LIMIT, MAX_RATE_LIMIT]. The API refuses values outside that
    range, but a store written by an older version may hold one (1e-12 once overflowed the
    pacing arithmetic and stopped every delivery)."""
    if rate_limit is None or math.isnan(rate_limit):
        return None
    return min(max(rate_limit, MIN_RATE_LIMIT), MAX_RATE_LIMIT)


class Pacing:
    def __init__(self, concurrency: int, max_wait: float, max_put_off: float) -> None:
        self.concurrency = concurrency
        self.max_wait = max_wait
        self.max_put_off = timedelta(seconds=max_put_off)
        self._pace: dict[str, float] = {}  # endpoint id -> average attempt seconds
        self._booked: dict[str, datetime] = {}  # endpoint id -> latest time put off to
        self._rate_limits: dict[str, float | None] = {}  # as last seen on a claim

    def note(self, endpoint_id: str, seconds: float) -> None:
        """An attempt to the endpoint took `seconds`."""
        pace = self._pace.get(endpoint_id)
        self._pace[endpoint_id] = seconds if pace is None else pace + WEIGHT * (seconds - pace)

    def put_off(self, endpoint: Endpoint, waiting: int, now: datetime) -> datetime | None:
        """None when a claim joining the `waiting` ones in the endpoint's lane now would
        start within `max_wait`; else when the endpoint should be ready for it: the next
        free slot of its schedule, after the claims put off before it, at most
        `max_put_off` from now (past that, it is looked at again then)."""
        pace = self._pace.get(endpoint.id)
        self._rate_limits[endpoint.id] = endpoint.rate_limit
        if pace is None:  # nothing timed yet: a lane's worth now, the rest soon after
            if waiting < 2 * self.concurrency:
                return None
            soon = now + timedelta(seconds=UNTIMED_PUT_OFF)
            self._booked[endpoint.id] = max(soon, self._booked.get(endpoint.id, soon))
            return soon
        rate = self._rate(pace, endpoint.rate_limit)
        wait = (waiting + 1) / rate  # in float seconds: this runs for every claim
        if wait <= self.max_wait:
            return None
        step = timedelta(seconds=1 / rate)
        start = now + timedelta(seconds=wait)
        booked = self._booked.get(endpoint.id)
        if booked is not None and booked + step > start:
            start = booked + step
        start = min(start, now + self.max_put_off)
        self._booked[endpoint.id] = start
        return start

    def busy(self, now: datetime, waiting: Mapping[str, int]) -> dict[str, datetime]:
        """Endpoints with work put off past `now` that are still behind, each with the time
        its schedule ends: their further due deliveries can wait until then without being
        claimed first. `waiting`: claims waiting in each endpoint's lane (an endpoint
        without a lane has drained, and one whose lane would start a new claim within
        `max_wait` has caught up: neither is busy, whatever it was booked for)."""
        busy = {}
        for key, at in list(self._booked.items()):
            if at <= now:
                del self._booked[key]
            elif key in waiting and self._behind(key, waiting[key]):
                busy[key] = at
        return busy

    def _behind(self, key: str, waiting: int) -> bool:
        pace = self._pace.get(key)
        if pace is None:
            return True
        return (waiting + 1) / self._rate(pace, self._rate_limits.get(key)) > self.max_wait

    def _rate(self, pace: float, rate_limit: float | None) -> float:
        """Claims per second the endpoint takes: its concurrency over its average attempt
        time, or its rate limit when that is lower."""
        rate = self.concurrency / max(pace, 1e-4)
        limit = usable_rate(rate_limit)
        return min(rate, limit) if limit else rate


class RateLimit:
    """A token bucket: at most `rate` starts per second, bursts of one second's worth.
    `rate` is kept as given (the dispatcher compares it with the endpoint's); the bucket
    fills at `usable_rate(rate)`."""

    def __init__(self, rate: float) -> None:
        self.rate, self.at = rate, time.monotonic()
        self._fill = usable_rate(rate)
        self.tokens = max(1.0, self._fill or 1.0)

    async def take(self) -> None:
        fill = self._fill
        if fill is None:
            return
        while True:
            now = time.monotonic()
            self.tokens = min(max(1.0, fill), self.tokens + (now - self.at) * fill)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / fill)
