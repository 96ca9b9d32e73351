"""Probing shared across a cluster: which instance probes which target, once per slot.

Ownership is rendezvous hashing over the live members of this instance's location (from every
membership beat), so a member joining or dying moves only its share. Before a run the
scheduler asks the gate: not the owner, no probe (and no Redis call); the owner claims the
slot (`SET {p}:claim:{location}:{target}:{slot} NX`), so the old and the new owner during a
change-over never both probe it, and none is missed. Redis unreachable: the gate lets the
probe run (Redis down must not stop probing) on the last ownership known. The feed publishes
each result to `{p}:latest` and `{p}:results` in one pipeline every quarter second; what it
cannot publish is dropped (counted), never waited for.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
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

CLAIM_TIMEOUT = 1.0  # seconds: a claim Redis does not answer by then is granted (fail open)
FLUSH_EVERY = 0.25  # seconds between the feed's pipelines
FEED_BUFFER = 20_000  # results waiting for a flush; the oldest go first beyond it
STREAM_MAXLEN = 100_000
FIELD_SEP = "\x1f"  # between target and location in `{p}:latest` fields


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
    """Which targets this instance owns, from the members of its location it last read.
    Until a first read (Redis not reached yet) it counts itself alone: it probes everything,
    the claims keeping other instances from probing a slot twice."""

    def __init__(self, instance: str, location: str, states: Sequence[TargetState],
                 registry: CollectorRegistry) -> None:
        """`states` may change in place (a config reload); the gauge follows at scrape."""
        self.instance, self.location = instance, location
        self._states = states
        self._peers: tuple[str, ...] = (instance,)
        self._owned: dict[tuple[str, tuple[str, ...]], bool] = {}  # for the current peers
        self.on_change: list[Callable[[], None]] = []  # called when the peers changed
        gauge = Gauge(m.CLUSTER_OWNED.name, m.CLUSTER_OWNED.help, registry=registry)
        gauge.set_function(self.count)

    @property
    def peers(self) -> tuple[str, ...]:
        """The live instances of this location, this one included."""
        return self._peers

    def update(self, members: Sequence[Member]) -> None:
        """A membership read: recompute ownership if this location's members changed."""
        peers = {x.instance for x in members if x.location == self.location}
        peers.add(self.instance)  # a Redis that lost our beat: we still probe
        ordered = tuple(sorted(peers))
        if ordered != self._peers:
            self._peers = ordered
            self._owned = {}
            for changed in self.on_change:
                changed()

    def owns(self, target: TargetConfig) -> bool:
        key = (target.name, target.locations)
        owned = self._owned.get(key)
        if owned is None:
            owned = self._owned[key] = probed_from(target, self.location) and \
                owner(target.name, self._peers) == self.instance
        return owned

    def count(self) -> int:
        """`crypitor_cluster_owned_targets`: the targets this instance probes now."""
        return sum(1 for s in self._states if self.owns(s.config))


class ProbeGate:
    """The scheduler's gate in cluster mode: owner, and the slot's claim won (or Redis
    unreachable)."""

    def __init__(self, redis: aioredis.Redis, ownership: Ownership, prefix: str = PREFIX,
                 timeout: float = CLAIM_TIMEOUT) -> None:
        self._redis = redis
        self._ownership = ownership
        self._prefix = prefix
        self._timeout = timeout
        self._failing = False

    def claim_key(self, target: str, slot: int) -> str:
        return f"{self._prefix}:claim:{self._ownership.location}:{target}:{slot}"

    async def __call__(self, job: Job, slot: int) -> bool:
        config = job.state.config
        if not self._ownership.owns(config):
            return False
        ttl_ms = max(1000, int(2000 * config.interval))
        try:
            async with asyncio.timeout(self._timeout):
                won = await self._redis.set(self.claim_key(config.name, slot),
                                            self._ownership.instance, nx=True, px=ttl_ms)
        except (RedisError, OSError, TimeoutError) as exc:
            if not self._failing:
                log.warning("cluster: cannot claim probe slots in Redis, probing the targets "
                            "owned here anyway: %s", str(exc) or type(exc).__name__)
            self._failing = True
            return True
        if self._failing:
            log.info("cluster: claiming probe slots in Redis again")
            self._failing = False
        return bool(won)


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
        """Send what is buffered in one pipeline; on failure it is dropped and counted."""
        if not self._buffer:
            return
        batch = list(self._buffer)
        self._buffer.clear()
        pipe = self._redis.pipeline(transaction=False)
        latest: dict[str, str] = {}
        for target, result in batch:
            doc = json.dumps(result.as_json(), separators=(",", ":"))
            latest[latest_field(target, self.location)] = (
                f'{{"instance":{json.dumps(self.instance)},"result":{doc}}}')
            pipe.xadd(self._stream, {"target": target, "location": self.location,
                                     "instance": self.instance, "result": doc},
                      maxlen=STREAM_MAXLEN, approximate=True)
        pipe.hset(self._latest, mapping=latest)  # type: ignore[arg-type]
        try:
            await pipe.execute()
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
