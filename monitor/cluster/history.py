"""The cluster's uptime history in Redis: every instance adds the counts of its own probes, and
any instance reads the whole cluster's (all locations counted), with the interface of
`monitor.runtime.history.UptimeHistory`.

Counts go to one hash per UTC hour (`{p}:uptime:h:<hour>`, kept 2 days, for the 24 h window)
and one per UTC day (`{p}:uptime:d:<day>`, kept 91 days, for 7 d and 30 d, which therefore
count whole days, and the status page's 90 d bars), field = target, value = total * 2**32 +
successes, so one HINCRBY adds both. Probe durations go beside them, in `{p}:latency:h:<hour>`
and `{p}:latency:d:<day>`: field target = summed seconds (HINCRBYFLOAT), field target + SEP +
"n" = how many probes that sum holds (buckets written before durations were kept have none:
their latency is unknown). A read of many targets' ratios takes 25 + 31 HGETALLs in one
pipeline and is reused for `READ_TTL`; a few targets are an HMGET each. Redis unreachable at
a flush: the counts are kept and added at the next one (at most `MAX_PENDING` of them, the
oldest dropped first).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from monitor.cluster.membership import PREFIX
from monitor.runtime import WINDOWS, Buckets, Counts, assemble, record_probe, shown

log = logging.getLogger("crypitor.cluster")

HOUR, DAY = 3600, 86400
SHIFT = 2**32  # value = total * SHIFT + ok
HOUR_TTL = 2 * DAY
DAY_TTL = 91 * DAY  # the status page shows 90 days
READ_TTL = 30.0  # seconds a whole read is reused: ratios move slowly
FEW = 64  # up to this many targets are read field by field, uncached
MAX_PENDING = 500_000  # (target, hour) counts kept while Redis cannot be reached
TIMEOUT = 5.0

Totals = dict[tuple[str, str], list[int]]  # (target, window) → [ok, total]
SEP = "\x1f"  # target + SEP + "n": the count of probes whose durations a latency field sums
# ARGV: the counts' and the latencies' key prefixes, seconds per hour and per day, the hour
# and day keys' time to live, then per (target, hour): target, hour, total * SHIFT + ok,
# summed seconds, probes timed. Adds them to the hour's and the day's buckets.
_ADD = """
local counts, latency = ARGV[1], ARGV[2]
local hour_s, day_s = tonumber(ARGV[3]), tonumber(ARGV[4])
local ttls = {h = ARGV[5], d = ARGV[6]}
local touched = {}
for i = 7, #ARGV, 5 do
  local target, hour = ARGV[i], tonumber(ARGV[i + 1])
  local buckets = {{'h', hour}, {'d', math.floor(hour * hour_s / day_s)}}
  for _, b in ipairs(buckets) do
    local suffix = ':' .. b[1] .. ':' .. string.format('%d', b[2])
    local key = counts .. suffix
    redis.call('HINCRBY', key, target, ARGV[i + 2])
    if not touched[key] then touched[key] = true; redis.call('EXPIRE', key, ttls[b[1]]) end
    if tonumber(ARGV[i + 4]) > 0 then
      local lkey = latency .. suffix
      redis.call('HINCRBYFLOAT', lkey, target, ARGV[i + 3])
      redis.call('HINCRBY', lkey, target .. '\\31n', ARGV[i + 4])
      if not touched[lkey] then touched[lkey] = true; redis.call('EXPIRE', lkey, ttls[b[1]]) end
    end
  end
end
return 1
"""


class ClusterHistory:
    """Uptime history shared by the cluster; `redis` is the caller's (it closes it)."""

    def __init__(self, redis: aioredis.Redis, prefix: str = PREFIX,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._prefix = f"{prefix}:uptime"
        self._clock = clock
        self._pending: dict[tuple[str, int], Counts] = {}
        self._latency = f"{prefix}:latency"
        self._script = redis.register_script(_ADD)  # loaded again when missing
        # the last read of buckets: (monotonic, hour, targets, hourly, daily)
        self._shown: tuple[float, int, frozenset[str], dict[tuple[str, int], Counts],
                           dict[tuple[str, int], Counts]] | None = None
        self._read: tuple[float, int, Totals] | None = None  # (monotonic, hour, counts)
        self._failing = False

    def record(self, target: str, success: bool, at: float,
               duration: float | None = None) -> None:
        """One probe's outcome at `at` (unix seconds), and its duration in seconds."""
        record_probe(self._pending, target, success, at, duration)

    async def flush(self) -> None:
        """Add the counts since the last flush; kept for the next one when Redis fails."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        args: list[str | int | float] = [self._prefix, self._latency, HOUR, DAY, HOUR_TTL,
                                         DAY_TTL]
        for (target, hour), (ok, total, seconds, timed) in pending.items():
            args += [target, hour, int(total) * SHIFT + int(ok), float(seconds), int(timed)]
        try:
            async with asyncio.timeout(TIMEOUT):
                # one call for the whole flush (all of it or none): a command per bucket and
                # target from Python cost more than the probe's own result handling
                await self._script(args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._keep(pending)
            if not self._failing:
                log.warning("cluster: cannot add the uptime counts to Redis; keeping them "
                            "for the next flush: %s", str(exc) or type(exc).__name__)
            self._failing = True
            return
        if self._failing:
            log.info("cluster: uptime counts added to Redis again")
        self._failing = False
        # the counts just added left `_pending`: reads cached from before must not lose them
        self._read = None
        if self._shown is not None:
            for (target, h), c in pending.items():
                for table, cell in ((self._shown[3], (target, h)),
                                    (self._shown[4], (target, h * HOUR // DAY))):
                    acc = table.setdefault(cell, [0, 0, 0.0, 0])
                    for i in range(4):
                        acc[i] += c[i]

    def _keep(self, pending: dict[tuple[str, int], Counts]) -> None:
        for key, counts in pending.items():
            acc = self._pending.setdefault(key, [0, 0, 0.0, 0])
            for i in range(4):
                acc[i] += counts[i]
        if len(self._pending) > MAX_PENDING:
            newest = sorted(self._pending, key=lambda k: k[1])[-MAX_PENDING:]
            self._pending = {k: self._pending[k] for k in newest}

    async def ratios(self, targets: Iterable[str]) -> dict[str, dict[str, float | None]]:
        """Share of successful probes per target over each window, all instances counted
        (None: no probe yet). Redis unreachable: what this instance has not flushed yet."""
        names = list(targets)
        now = self._clock()
        try:
            async with asyncio.timeout(TIMEOUT):
                if len(names) <= FEW:
                    totals = await self._read_fields(names, now)
                else:
                    totals = await self._read_all(now)
        except (RedisError, OSError, TimeoutError):
            totals = {}
        totals = {k: list(v) for k, v in totals.items()}  # the cached read stays as read
        for (target, hour), (ok, total, _, _) in self._pending.items():
            for window, start in _starts(now).items():
                if (hour if window == "24h" else hour * HOUR // DAY) >= start:
                    acc = totals.setdefault((target, window), [0, 0])
                    acc[0] += int(ok)
                    acc[1] += int(total)
        out: dict[str, dict[str, float | None]] = {}
        for target in names:
            out[target] = {}
            for window in WINDOWS:
                ok, total = totals.get((target, window), (0, 0))
                out[target][window] = round(ok / total, 6) if total else None
        return out

    def _keys(self, now: float) -> list[tuple[str, int, bool]]:
        """(key, its hour or day, daily) of every bucket the windows need, newest first."""
        starts = _starts(now)
        hour, day = int(now // HOUR), int(now // DAY)
        return ([(f"{self._prefix}:h:{h}", h, False)
                 for h in range(hour, starts["24h"] - 1, -1)]
                + [(f"{self._prefix}:d:{d}", d, True)
                   for d in range(day, starts["30d"] - 1, -1)])

    async def _read_all(self, now: float) -> Totals:
        hour = int(now // HOUR)
        if self._read is not None and time.monotonic() - self._read[0] < READ_TTL \
                and self._read[1] == hour:
            return self._read[2]
        keys = self._keys(now)
        pipe = self._redis.pipeline(transaction=False)
        for key, _, _ in keys:
            pipe.hgetall(key)
        answers = await pipe.execute()
        totals: Totals = {}
        starts = _starts(now)
        for (_, bucket, daily), fields in zip(keys, answers, strict=True):
            for target, value in fields.items():
                _add(totals, target, bucket, daily, int(value), starts)
        self._read = (time.monotonic(), hour, totals)
        return totals

    async def _read_fields(self, names: Sequence[str], now: float) -> Totals:
        if not names:
            return {}
        keys = self._keys(now)
        pipe = self._redis.pipeline(transaction=False)
        for key, _, _ in keys:
            pipe.hmget(key, names)
        answers = await pipe.execute()
        totals: Totals = {}
        starts = _starts(now)
        for (_, bucket, daily), values in zip(keys, answers, strict=True):
            for target, value in zip(names, values, strict=True):
                if value is not None:
                    _add(totals, target, bucket, daily, int(value), starts)
        return totals

    async def buckets(self, targets: Iterable[str]) -> dict[str, Buckets]:
        """Each target's hourly and daily buckets, all instances counted, as the status page
        shows them: one pipeline of HMGETs (uptime and latency of 24 hours and 90 days),
        reused for `READ_TTL` within the hour. Redis unreachable: this instance's unflushed
        counts only."""
        names = list(targets)
        now = self._clock()
        hour = int(now // HOUR)
        cached = self._shown
        hourly: dict[tuple[str, int], Counts] = {}
        daily: dict[tuple[str, int], Counts] = {}
        if (cached is not None and time.monotonic() - cached[0] < READ_TTL
                and cached[1] == hour and cached[2].issuperset(names)):
            hourly = {k: list(v) for k, v in cached[3].items()}
            daily = {k: list(v) for k, v in cached[4].items()}
        else:
            try:
                async with asyncio.timeout(TIMEOUT):
                    await self._read_buckets(names, now, hourly, daily)
                self._shown = (time.monotonic(), hour, frozenset(names),
                               {k: list(v) for k, v in hourly.items()},
                               {k: list(v) for k, v in daily.items()})
            except (RedisError, OSError, TimeoutError):
                hourly, daily = {}, {}
        for (target, h), c in self._pending.items():
            for table, key in ((hourly, (target, h)), (daily, (target, h * HOUR // DAY))):
                acc = table.setdefault(key, [0, 0, 0.0, 0])
                for i in range(4):
                    acc[i] += c[i]
        # for a thousand targets this takes a few hundred milliseconds: not on the event loop
        return await asyncio.to_thread(assemble, names, now, hourly, daily)

    async def _read_buckets(self, names: Sequence[str], now: float,
                            hourly: dict[tuple[str, int], Counts],
                            daily: dict[tuple[str, int], Counts]) -> None:
        if not names:
            return
        hours, days = shown(now)
        buckets = [(f"h:{h}", h, hourly) for h in hours] + [(f"d:{d}", d, daily) for d in days]
        counted = [n + SEP + "n" for n in names]
        pipe = self._redis.pipeline(transaction=False)
        for bucket, _, _ in buckets:
            pipe.hmget(f"{self._prefix}:{bucket}", names)
            pipe.hmget(f"{self._latency}:{bucket}", [*names, *counted])
        answers = await pipe.execute()
        for i, (_, number, table) in enumerate(buckets):
            values, latency = answers[2 * i], answers[2 * i + 1]
            for j, name in enumerate(names):
                if values[j] is None:
                    continue
                total, ok = divmod(int(values[j]), SHIFT)
                seconds, timed = latency[j], latency[len(names) + j]
                table[(name, number)] = [ok, total, float(seconds or 0.0), int(timed or 0)]

    def close(self) -> None:
        """Nothing to release: the Redis client is the caller's."""


def _starts(now: float) -> dict[str, int]:
    """The first bucket of each window: an hour for 24h, a day for 7d and 30d."""
    return {window: int((now - seconds) // (HOUR if window == "24h" else DAY))
            for window, seconds in WINDOWS.items()}


def _add(totals: Totals, target: str, bucket: int, daily: bool, value: int,
         starts: dict[str, int]) -> None:
    """Count one bucket's `value` into the windows it lies in (hours: 24h; days: the rest)."""
    total, ok = divmod(value, SHIFT)
    for window, start in starts.items():
        if (window == "24h") == daily or bucket < start:
            continue
        acc = totals.setdefault((target, window), [0, 0])
        acc[0] += ok
        acc[1] += total
