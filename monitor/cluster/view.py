"""The cluster-wide view of the targets: every target's last result from every location, as the
instances that probed them published it to `{p}:latest`, for the API and the status page of
any instance.

One HGETALL per `ttl` (about a second) however many requests ask; this instance's own results
are merged in as they happen, so a Redis that cannot be reached still shows them (and the
last read of the others, marked stale as they age).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.clock import Clock, utc_now
from monitor.cluster.membership import PREFIX
from monitor.cluster.probing import FIELD_SEP
from monitor.runtime import TargetState
from probes.base import ProbeResult

log = logging.getLogger("crypitor.cluster")

CACHE_TTL = 1.0  # seconds a read of `{p}:latest` is reused
READ_TIMEOUT = 2.0


@dataclass(frozen=True)
class LocationResult:
    """The last result of one target from one location, and which instance probed it."""

    instance: str
    result: ProbeResult
    stale: bool  # older than 2 intervals + the lease: nobody there probes it any more

    def as_json(self) -> dict[str, object]:
        return {"up": self.result.success, "instance": self.instance, "stale": self.stale,
                "last_result": self.result.as_json()}


@dataclass(frozen=True)
class TargetView:
    """One target across the cluster. `up`: None with no fresh result anywhere, False when
    any fresh location sees it down, else True; `last` the newest result of any location."""

    up: bool | None
    last: ProbeResult | None
    locations: dict[str, LocationResult]


class ClusterView:
    """Reads `{prefix}:latest` (cached `ttl` seconds) and combines it with this instance's
    own `TargetState`s."""

    def __init__(self, redis: aioredis.Redis, *, instance: str, location: str, lease: float,
                 prefix: str = PREFIX, clock: Clock = utc_now, ttl: float = CACHE_TTL) -> None:
        self._redis = redis
        self.instance, self.location, self._lease = instance, location, lease
        self._key = f"{prefix}:latest"
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[str, ProbeResult]] = {}
        self._read_at = -float("inf")
        self._lock = asyncio.Lock()  # one read at a time; the others wait for its answer
        self._failing = False

    async def published(self) -> dict[tuple[str, str], tuple[str, ProbeResult]]:
        """(target, location) → (instance, result) as published; the last read when Redis
        cannot be asked."""
        async with self._lock:
            if time.monotonic() - self._read_at < self._ttl:
                return self._cache
            try:
                async with asyncio.timeout(READ_TIMEOUT):
                    raw = await self._redis.hgetall(self._key)
            except (RedisError, OSError, TimeoutError) as exc:
                if not self._failing:
                    log.warning("cluster: cannot read the cluster's results from Redis; "
                                "showing the last read: %s", str(exc) or type(exc).__name__)
                self._failing = True
                self._read_at = time.monotonic()  # not again at once for every request
                return self._cache
            self._failing = False
            self._cache = _parse(raw)
            self._read_at = time.monotonic()
            return self._cache

    async def targets(self, states: Sequence[TargetState]) -> dict[str, TargetView]:
        """Every target of `states` as the cluster sees it."""
        published = await self.published()
        now = self._clock()
        by_target: dict[str, dict[str, tuple[str, ProbeResult]]] = {}
        for (target, location), entry in published.items():
            by_target.setdefault(target, {})[location] = entry
        out: dict[str, TargetView] = {}
        for state in states:
            seen = dict(by_target.get(state.name, {}))
            mine = state.last
            theirs = seen.get(self.location)
            if mine is not None and (theirs is None or
                                     mine.started_at >= theirs[1].started_at):
                seen[self.location] = (self.instance, mine)  # not published yet, or Redis down
            limit = 2 * state.config.interval + self._lease
            locations = {
                loc: LocationResult(inst, result,
                                    (now - result.started_at).total_seconds() > limit)
                for loc, (inst, result) in sorted(seen.items())}
            fresh = [x.result.success for x in locations.values() if not x.stale]
            up = None if not fresh else all(fresh)
            last = max((x.result for x in locations.values()), default=None,
                       key=lambda r: r.started_at)
            out[state.name] = TargetView(up, last, locations)
        return out


def _parse(raw: Mapping[Any, Any]) -> dict[tuple[str, str], tuple[str, ProbeResult]]:
    """The fields of `{p}:latest` (decoded to str by the client); unreadable ones left out."""
    out: dict[tuple[str, str], tuple[str, ProbeResult]] = {}
    for field, value in raw.items():
        target, sep, location = str(field).rpartition(FIELD_SEP)
        if not sep:
            continue
        try:
            doc = json.loads(value)
            out[(target, location)] = (str(doc["instance"]),
                                       ProbeResult.from_json(doc["result"]))
        except (ValueError, KeyError, TypeError):  # a newer build's shape: not shown
            continue
    return out
