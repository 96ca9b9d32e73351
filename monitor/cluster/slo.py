"""The cluster's SLO counts in Redis (`monitor.runtime.slo.SloHistory`): every instance adds
the counts of its own probes and of its embedded service's deliveries, and every instance
reads the whole cluster's, so any of them evaluates the same SLOs (the alerting leader
alerts on them).

Counts go to one hash per UTC minute (`{p}:slo:m:<minute>`, kept `FINE_KEEP`, for the
burn-rate windows up to 6 h) and one per UTC hour (`{p}:slo:h:<hour>`, kept `RETENTION`, for
3 d and the SLO windows), field = SLO name, value = total * 2**32 + good, so one HINCRBY adds
both, as `monitor.cluster.history` does; `{p}:slo:since` holds when each SLO first counted.
A read is one pipeline of HMGETs over the buckets the longest window needs. Redis
unreachable at a flush: the counts are kept for the next one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from monitor.cluster.membership import PREFIX
from monitor.runtime import SLO_FINE_KEEP as FINE_KEEP
from monitor.runtime import SLO_FINE_LIMIT as FINE_LIMIT
from monitor.runtime import SLO_RETENTION as RETENTION
from monitor.runtime import SloCounts

MINUTE, HOUR = 60, 3600

log = logging.getLogger("crypitor.cluster")

SHIFT = 2**32
TIMEOUT = 5.0
MAX_PENDING = 100_000  # (slo, size, bucket) counts kept while Redis cannot be reached


class RedisSloHistory:
    """SLO counts shared by the cluster; `redis` is the caller's (it closes it)."""

    def __init__(self, redis: aioredis.Redis, prefix: str = PREFIX) -> None:
        self._redis = redis
        self._prefix = f"{prefix}:slo"
        self._pending: dict[tuple[str, int, int], list[int]] = {}
        self._first: dict[str, float] = {}
        self._failing = False

    def record(self, slo: str, good: int, total: int, at: float) -> None:
        self._first[slo] = min(at, self._first.get(slo, at))
        for size in (MINUTE, HOUR):
            counts = self._pending.setdefault((slo, size, int(at // size)), [0, 0])
            counts[0] += good
            counts[1] += total

    def _key(self, size: int, bucket: int) -> str:
        return f"{self._prefix}:{'m' if size == MINUTE else 'h'}:{bucket}"

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        first, self._first = self._first, {}
        if not pending and not first:
            return
        pipe = self._redis.pipeline(transaction=True)
        touched: set[str] = set()
        for (slo, size, bucket), (good, total) in pending.items():
            key = self._key(size, bucket)
            pipe.hincrby(key, slo, total * SHIFT + good)
            if key not in touched:
                touched.add(key)
                pipe.expire(key, FINE_KEEP if size == MINUTE else RETENTION)
        for slo, at in first.items():
            pipe.hsetnx(f"{self._prefix}:since", slo, repr(at))
        try:
            async with asyncio.timeout(TIMEOUT):
                await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            for kept, (good, total) in pending.items():
                counts = self._pending.setdefault(kept, [0, 0])
                counts[0] += good
                counts[1] += total
            for slo, at in first.items():
                self._first.setdefault(slo, at)
            if len(self._pending) > MAX_PENDING:  # the oldest buckets go first
                newest = sorted(self._pending, key=lambda k: k[1] * k[2])[-MAX_PENDING:]
                self._pending = {k: self._pending[k] for k in newest}
            if not self._failing:
                log.warning("cluster: cannot add the SLO counts to Redis; keeping them for "
                            "the next flush: %s", str(exc) or type(exc).__name__)
            self._failing = True
            return
        self._failing = False

    async def read(self, windows: Mapping[str, Mapping[str, float]],
                   now: float) -> dict[str, SloCounts]:
        """Counts of the whole cluster (what this instance has not flushed yet included);
        Redis unreachable: this instance's unflushed counts only."""
        names = list(windows)
        longest = max((s for w in windows.values() for s in w.values()), default=0.0)
        fine = list(range(int((now - FINE_LIMIT) // MINUTE), int(now // MINUTE) + 1))
        coarse = list(range(int((now - longest) // HOUR), int(now // HOUR) + 1))
        counts: dict[tuple[str, int, int], list[int]] = {}
        since: dict[str, float] = {}
        if names:
            try:
                async with asyncio.timeout(TIMEOUT):
                    pipe = self._redis.pipeline(transaction=False)
                    for size, buckets in ((MINUTE, fine), (HOUR, coarse)):
                        for bucket in buckets:
                            pipe.hmget(self._key(size, bucket), names)
                    pipe.hmget(f"{self._prefix}:since", names)
                    answers = await pipe.execute()
                keys = [(MINUTE, b) for b in fine] + [(HOUR, b) for b in coarse]
                for (size, bucket), values in zip(keys, answers[:-1], strict=True):
                    for slo, value in zip(names, values, strict=True):
                        if value is not None:
                            total, good = divmod(int(value), SHIFT)
                            counts[(slo, size, bucket)] = [good, total]
                for slo, value in zip(names, answers[-1], strict=True):
                    if value is not None:
                        since[slo] = float(value)
            except (RedisError, OSError, TimeoutError, ValueError):
                counts, since = {}, {}
        for key, (good, total) in self._pending.items():
            acc = counts.setdefault(key, [0, 0])
            acc[0] += good
            acc[1] += total
        for slo, at in self._first.items():
            since[slo] = min(at, since.get(slo, at))
        out: dict[str, SloCounts] = {}
        for slo, wanted in windows.items():
            sums: dict[str, tuple[int, int]] = {}
            for window, seconds in wanted.items():
                size = MINUTE if seconds <= FINE_LIMIT else HOUR
                start = int((now - seconds) // size)
                good = total = 0
                for (name, s, bucket), (g, t) in counts.items():
                    if name == slo and s == size and bucket >= start:
                        good += g
                        total += t
                sums[window] = (good, total)
            out[slo] = SloCounts(sums, since.get(slo))
        return out

    def close(self) -> None:
        """Nothing to release: the Redis client is the caller's."""
