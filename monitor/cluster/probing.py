"""Probing shared across a cluster: which instance probes which target, once per slot.

Ownership is rendezvous hashing over the settled members of this instance's location (from
every membership beat), so a member joining or dying moves only its share. A member is settled
SETTLE seconds after it joined (Redis's time of its first beat): every instance beats at least
every second, so by then all of them know it, and each computes the same owner for every slot
(a slot is a point of the wall-clock grid, the same number everywhere) with no Redis call per
probe: the old owner probes the slots before the newcomer settles, the newcomer those after.
A dead member's targets go to the others as soon as they see it gone (after its lease): it
probes nothing any more, so that needs no hand-over. Before the first membership read an
instance probes nothing for up to `lease` (it may have peers), then everything (Redis is not
answering: probing must not depend on it); while Redis is unreachable it keeps the last
ownership it read. The feed publishes each result to `{p}:latest` and `{p}:results` in one
script call every second; what it cannot publish is dropped (counted), never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.exceptions import RedisError

import catalog.metrics as m
from monitor.cluster.membership import PREFIX, Member
from monitor.config import TargetConfig
from monitor.runtime import Job, TargetState
from probes.base import ProbeResult

log = logging.getLogger("crypitor.cluster")

SETTLE = 2.0  # seconds a new member waits before probing: twice the longest beat period
# seconds between the feed's script calls: each costs the instance, Redis and the alerting
# leader a round trip and a wake-up whatever it carries (bench.cluster); alerting waits up to
# this much longer for a result
FLUSH_EVERY = 1.0
FEED_BUFFER = 20_000  # results waiting for a flush; the oldest go first beyond it
STREAM_MAXLEN = 100_000
FIELD_SEP = "\x1f"  # between target and location in `{p}:latest` fields

# KEYS: the stream, the latest hash. ARGV: location, instance, the stream's approximate
# length cap, the prefix of a latest value, then (target, result document) pairs. Each result
# is one stream entry with the fields the leader reads (target, location, instance, result),
# as a pipeline of XADDs made them, and its target's latest value.
_PUBLISH = """
local location, instance, cap, head = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local sep = string.char(31)  -- FIELD_SEP
for i = 5, #ARGV, 2 do
  local target, doc = ARGV[i], ARGV[i + 1]
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', cap, '*', 'target', target,
             'location', location, 'instance', instance, 'result', doc)
  redis.call('HSET', KEYS[2], target .. sep .. location, head .. doc .. '}')
end
return 0
"""


def owner(target: str, instances: Iterable[str]) -> str | None:
    """The instance that probes `target` among `instances` (rendezvous hashing: the highest
    blake2b of `target \\0 instance`); None when there is none."""
    best, best_score = None, b""
    for instance in instances:
        score = hashlib.blake2b(f"{target}\0{instance}".encode(), digest_size=8).digest()
        if best is None or score > best_score or (score == best_score and instance > best):
            best, best_score = instance, score
    return best


def probed_from(target: TargetConfig, location: str) -> bool:
    """Whether `target` is probed from `location` at all (`locations` empty: everywhere)."""
    return not target.locations or location in target.locations


def latest_field(target: str, location: str) -> str:
    return f"{target}{FIELD_SEP}{location}"


class Ownership:
    """Which targets this instance owns at a given time, from the members of its location it
    last read (see the module's docstring); `on_change` listeners are called when the
    members changed and again once a newcomer settled."""

    def __init__(self, instance: str, location: str, states: Sequence[TargetState],
                 registry: CollectorRegistry, *, lease: float = 10.0, settle: float = SETTLE,
                 clock: Callable[[], float] = time.time) -> None:
        """`states` may change in place (a config reload); the gauge follows at scrape."""
        self.instance, self.location = instance, location
        self.settle, self._lease, self._clock = settle, lease, clock
        self._states = states
        self._started = clock()
        self._members: tuple[tuple[str, float], ...] | None = None  # (instance, joined)
        self._owned: dict[tuple[str, tuple[str, ...], tuple[str, ...]], bool] = {}
        self.on_change: list[Callable[[], None]] = []
        gauge = Gauge(m.CLUSTER_OWNED.name, m.CLUSTER_OWNED.help, registry=registry)
        gauge.set_function(self.count)

    @property
    def peers(self) -> tuple[str, ...]:
        """The settled instances of this location now (they share its targets)."""
        return self._settled(self._clock())

    def update(self, members: Sequence[Member]) -> None:
        """A membership read: remember this location's members and their join times."""
        now = self._clock()
        found = {x.instance: x.joined.timestamp() if x.joined is not None else 0.0
                 for x in members if x.location == self.location}
        if self.instance not in found:  # a Redis that lost our beat: we still probe
            found[self.instance] = 0.0
        ordered = tuple(sorted(found.items()))
        if ordered == self._members:
            return
        self._members = ordered
        self._owned = {}
        self._notify()
        if any(now < joined + self.settle for _, joined in ordered):
            with contextlib.suppress(RuntimeError):  # no loop: a test's plain call
                asyncio.get_running_loop().call_later(self.settle + 0.05, self._notify)

    def _notify(self) -> None:
        for changed in self.on_change:
            changed()

    def _settled(self, at: float) -> tuple[str, ...]:
        if self._members is None:  # never read: alone once Redis had `lease` to answer
            return (self.instance,) if at >= self._started + self._lease else ()
        return tuple(i for i, joined in self._members if joined + self.settle <= at)

    def owns(self, target: TargetConfig, at: float | None = None) -> bool:
        """Whether this instance probes `target`'s slot at time `at` (default: now)."""
        if not probed_from(target, self.location):
            return False
        peers = self._settled(self._clock() if at is None else at)
        key = (target.name, target.locations, peers)
        owned = self._owned.get(key)
        if owned is None:
            owned = self._owned[key] = owner(target.name, peers) == self.instance
        return owned

    def soon(self, target: TargetConfig) -> bool:
        """Owns it now or once the newcomers settled: what the scheduler fires."""
        now = self._clock()
        return self.owns(target, now) or self.owns(target, now + self.settle + 0.05)

    def count(self) -> int:
        """`crypitor_cluster_owned_targets`: the targets this instance probes now."""
        return sum(1 for s in self._states if self.owns(s.config))


class ProbeGate:
    """The scheduler's gate in cluster mode: whether this instance owns the slot (its grid
    time decides, the same on every instance)."""

    def __init__(self, ownership: Ownership) -> None:
        self._ownership = ownership

    async def __call__(self, job: Job, slot: int) -> bool:
        config = job.state.config
        return self._ownership.owns(config, job.offset + slot * config.interval)


class ResultFeed:
    """Publishes this instance's results for the cluster: `publish()` only buffers (never
    blocks probing); `run()` flushes every `every` seconds until cancelled (supervise it)."""

    def __init__(self, redis: aioredis.Redis, instance: str, location: str,
                 registry: CollectorRegistry, prefix: str = PREFIX,
                 every: float = FLUSH_EVERY, buffer: int = FEED_BUFFER) -> None:
        self._redis = redis
        self.instance, self.location = instance, location
        self._latest = f"{prefix}:latest"
        self._stream = f"{prefix}:results"
        self._every = every
        self._buffer: deque[tuple[str, ProbeResult]] = deque(maxlen=buffer)
        self._head = f'{{"instance":{json.dumps(instance)},"result":'  # a latest value's
        self._script = redis.register_script(_PUBLISH)  # loaded again when missing
        self._dropped = Counter(m.CLUSTER_RESULTS_DROPPED.name,
                                m.CLUSTER_RESULTS_DROPPED.help, registry=registry)
        self._failing = False

    def publish(self, target: str, result: ProbeResult) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self._dropped.inc()  # the oldest makes room
        self._buffer.append((target, result))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            await self.flush()

    async def flush(self) -> None:
        """Send what is buffered in one script call; on failure it is dropped and counted."""
        if not self._buffer:
            return
        batch = list(self._buffer)
        self._buffer.clear()
        args: list[str] = [self.location, self.instance, str(STREAM_MAXLEN), self._head]
        for target, result in batch:
            args.append(target)
            args.append(json.dumps(result.as_json(), separators=(",", ":")))
        try:
            await self._script(keys=[self._stream, self._latest], args=args)
        except (RedisError, OSError) as exc:
            self._dropped.inc(len(batch))
            if not self._failing:
                log.warning("cluster: cannot publish results to Redis; dropping them until "
                            "it answers (crypitor_cluster_results_dropped_total): %s",
                            str(exc) or type(exc).__name__)
            self._failing = True
            return
        if self._failing:
            log.info("cluster: publishing results to Redis again")
            self._failing = False


def recently_probed(state: TargetState, owned: Callable[[TargetConfig], bool],
                    now: datetime) -> bool:
    """Whether this instance's `/metrics` shows `state`'s gauges: it owns the target now, or
    its own last result is younger than 2 intervals (a target that just moved away)."""
    if owned(state.config):
        return True
    last = state.last
    return last is not None and \
        (now - last.started_at).total_seconds() < 2 * state.config.interval
