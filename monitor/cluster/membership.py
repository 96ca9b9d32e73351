"""Cluster membership: which `crypitor run` instances are alive, and where they probe from.

Every instance writes a heartbeat (its id, its location, Redis's own clock as the time last
seen, and the time it joined: its first beat of this membership) every third of the lease, at
least every second (`beat_every`), and tells its listeners (probe ownership) the members it
read; one not heard from for a whole lease is dead and is dropped
by whichever instance beats or reads next. While Redis cannot be reached the gauge keeps
the last count it read. A clean stop removes the instance at once. Redis's clock
is the only one read, so instances whose clocks run apart still agree.

Errors: `ClusterUnavailable` when Redis cannot be asked; the heartbeat loop (`keep`) logs
that once per outage and keeps retrying, so probing never depends on Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Gauge
from redis.exceptions import RedisError

import catalog.metrics as m
from monitor.cluster.connection import connect

log = logging.getLogger("crypitor.cluster")

PREFIX = "crypitor:cluster"
REQUEST_TIMEOUT = 5.0  # seconds: every Redis call; a beat is due every lease/3 anyway
LEAVE_TIMEOUT = 2.0
MAX_BEAT_EVERY = 1.0  # seconds: a dead member's targets move within lease + this

# KEYS: the members' sorted set (score: last seen, Redis time), their locations' hash and
# their join times' hash (Redis time of the first beat of this membership).
# ARGV: instance id ("" to only read), its location, the lease in seconds.
# Returns the live members as a flat list: id, location, last seen, joined, ...
_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if ARGV[1] ~= '' then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  redis.call('HSETNX', KEYS[3], ARGV[1], tostring(now))
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[3])))
for _, id in ipairs(dead) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
local out = {}
local live = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #live, 2 do
  table.insert(out, live[i])
  table.insert(out, redis.call('HGET', KEYS[2], live[i]) or '')
  table.insert(out, live[i + 1])
  table.insert(out, redis.call('HGET', KEYS[3], live[i]) or live[i + 1])
end
return out
"""


class ClusterUnavailable(Exception):
    """Redis could not be asked; who is alive is unknown."""


@dataclass(frozen=True)
class Member:
    """One live instance as Redis last heard from it."""

    instance: str
    location: str
    last_seen: datetime  # UTC, by Redis's clock
    joined: datetime | None = None  # its first beat of this membership (None: long ago)


def default_instance() -> str:
    """The instance id when `[cluster].instance` is empty: host name and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Membership:
    """This instance's place in the cluster: `keep()` heartbeats until cancelled (run it
    under the supervisor), `run()` also leaves on a clean stop; `members()` reads the live
    ones; `joined` once a heartbeat went through. The gauge
    `crypitor_cluster_members{location}` follows every beat on `registry`, and every
    callable of `listeners` is given the live members each time they are read."""

    def __init__(self, redis_url: str, *, location: str, instance: str, lease: float,
                 registry: CollectorRegistry, prefix: str = PREFIX) -> None:
        self.location = location
        self.instance = instance or default_instance()
        self.lease = lease
        self.beat_every = min(lease / 3, MAX_BEAT_EVERY)
        self.listeners: list[Callable[[list[Member]], None]] = []
        self._redis = connect(redis_url, timeout=REQUEST_TIMEOUT)
        self._keys = [f"{prefix}:members", f"{prefix}:locations", f"{prefix}:joined"]
        self._script = self._redis.register_script(_BEAT)  # loaded again when missing
        self._gauge = Gauge(m.CLUSTER_MEMBERS.name, m.CLUSTER_MEMBERS.help,
                            m.CLUSTER_MEMBERS.labels, registry=registry)
        self._locations: set[str] = set()  # every location the gauge has shown
        self._failing = False
        self.joined = False

    async def beat(self) -> list[Member]:
        """Heartbeat once; the live members. `ClusterUnavailable` when Redis fails."""
        members = await self._call(self.instance, self.location)
        self.joined = True
        self._show(members)
        return members

    async def members(self) -> list[Member]:
        """The live members, this one included while it beats (the gauge follows)."""
        members = await self._call("", "")
        self._show(members)
        return members

    async def keep(self) -> None:
        """Heartbeat every `beat_every` until cancelled; a failure is logged once per
        outage, and the beats go on."""
        while True:
            try:
                await self.beat()
            except ClusterUnavailable as exc:
                if not self._failing:
                    log.warning("cluster: cannot reach Redis, retrying every %gs: %s",
                                self.beat_every, exc)
                self._failing = True
            else:
                if self._failing:
                    log.info("cluster: Redis reachable again; instance %s is a member",
                             self.instance)
                self._failing = False
            await asyncio.sleep(self.beat_every)

    async def run(self) -> None:
        """`keep()`, then leave at once when cancelled (a clean stop)."""
        try:
            await self.keep()
        finally:
            await self.leave()

    async def leave(self) -> None:
        """Remove this instance now, so the others need not wait for its lease."""
        self.joined = False
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(LEAVE_TIMEOUT):
                pipe = self._redis.pipeline()
                pipe.zrem(self._keys[0], self.instance)
                pipe.hdel(self._keys[1], self.instance)
                pipe.hdel(self._keys[2], self.instance)
                await pipe.execute()

    async def close(self) -> None:
        await self._redis.aclose()

    async def _call(self, instance: str, location: str) -> list[Member]:
        try:
            flat = await self._script(keys=self._keys, args=[instance, location, self.lease])
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(str(exc) or type(exc).__name__) from exc
        return [Member(flat[i], flat[i + 1],
                       datetime.fromtimestamp(float(flat[i + 2]), UTC),
                       datetime.fromtimestamp(float(flat[i + 3]), UTC))
                for i in range(0, len(flat), 4)]

    def _show(self, members: list[Member]) -> None:
        counts: dict[str, int] = {}
        for member in members:
            counts[member.location] = counts.get(member.location, 0) + 1
        self._locations |= counts.keys()
        for location in self._locations:  # a location that emptied shows 0, not stale
            self._gauge.labels(location).set(counts.get(location, 0))
        for listener in self.listeners:
            listener(members)
