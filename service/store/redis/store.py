"""The Redis backend of `service.store.Store`: several service processes, on several machines,
share one queue. Run Redis with `appendonly yes`, `appendfsync always` (an accepted event is
then on disk before `accept` returns) and `maxmemory-policy noeviction` (nothing is evicted).

Keys, all under `<prefix>:` (times are integer microseconds since the epoch):
    eps                  zset  endpoint id -> creation sequence
    ep:<id>              hash  the endpoint; ep:<id>:dls zset of its deliveries (creation
                               order), ep:<id>:dead zset of dead ones by creation time (replay),
                               ep:<id>:parked zset of due keys held while it is disabled
    disabled             set   ids of disabled endpoints
    ev:<id>              hash  the event, with its delivery ids
    idem:<key>           str   "<event id> <first seen>", SET NX; the window is checked
                               against `now`, the 24 h EXPIRE only collects garbage
    dl:<id>, att:<id>    hash  the delivery; list of its attempts (JSON)
    due                  zset  "<seq>:<delivery id>" -> due time: pending and retrying work
    stream               stream with consumer group `workers`: leased deliveries
    leases               zset  stream entry id -> lease deadline
    active               zset  delivery id -> its event's acceptance time (depth, oldest age)
    mons                 zset  monitor id -> creation sequence
    mon:<id>             hash  the monitor; its addresses are one field of 40-hex-digit runs
                               (100,000 addresses: one 4 MB value, not 100,000 keys);
                               `rev` counts its writes (compare-and-set of PATCH)
    monver               str   monitors version, INCR by every put and delete
    cursor:<name>        str   a follower's state (JSON)
    cursorlease:<name>   str   the holder allowed to advance it; expires (PX) unless renewed
    mh:<id>, mhx:<id>, mha:<id>  zsets: a monitor's history (all, by tx hash, by address);
                               the match itself is kept in its event's hash (see ADVANCE)
An active delivery is in exactly one of `due`, the stream (leased) or a `parked` set.

Claiming first takes over expired leases, then moves due deliveries (oldest first, ties in
creation order) into the stream and reads them with XREADGROUP: each in-flight delivery is an
entry in the pending list (PEL) of exactly one consumer, and leaves the stream when settled.
Expiry is not the PEL's idle time but a deadline (`now + lease`) in `leases`, because the
interface passes `now` and expiry must follow it (tests, and processes whose clocks differ).
An expired entry is taken over with XCLAIM; the lease token carries a generation, so a worker
whose lease was taken over can no longer settle (its attempt is still recorded). An entry
that left the PEL by hand (XGROUP DELCONSUMER) is put back in `due` rather than lost.
Every multi-key step is one Lua script (`service.redis_scripts`,
`service.redis_monitor_scripts`): atomic between processes, one transaction in the AOF.
The monitor and follower operations are in `service.redis_monitors`, converters in
`service.redis_codec`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError, ResponseError

from service.models import (
    ACTIVE_STATES,
    Attempt,
    Claim,
    Delivery,
    Endpoint,
    EventView,
    NewEvent,
    QueueStats,
    Verdict,
)
from service.store import Settled
from service.store.redis.codec import (
    _attempt,
    _attempt_json,
    _delivery,
    _endpoint,
    _event,
    _events_args,
    _hash,
    _time,
    _translated,
    _us,
)
from service.store.redis.lua import queue as redis_scripts
from service.store.redis.monitors import RedisMonitors

GROUP = "workers"
IDLE_CONSUMER_MS = 3_600_000  # consumers with nothing pending and idle this long are removed
# Without these an acknowledged event can be lost: to a crash before the AOF write reached the
# disk, or to eviction under memory pressure.
ADVISED = {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}

log = logging.getLogger(__name__)


class RedisStore(RedisMonitors):
    """`Store` on Redis; one instance is one consumer of the shared group."""

    def __init__(self, url: str, *, prefix: str = "crypitor", timeout: float = 10.0,
                 max_connections: int = 32) -> None:
        # Redis runs one command at a time: past a few dozen connections more only cost
        # memory, so callers beyond the pool wait for a connection (up to `timeout`).
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout, decode_responses=True,
            socket_timeout=timeout, socket_connect_timeout=timeout)
        self._redis = aioredis.Redis.from_pool(pool)
        self._prefix = prefix
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._shas: dict[str, str] = {}

    async def _run(self, script: str, *args: str | int | float) -> Any:
        sha = self._shas.get(script)
        if sha is None:
            sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
            self._shas[script] = sha
        try:
            return await self._redis.evalsha(sha, 0, self._prefix, *args)
        except NoScriptError:  # first use, or Redis restarted: the script cache is empty
            await self._redis.script_load(script)
            return await self._redis.evalsha(sha, 0, self._prefix, *args)

    async def open(self) -> None:
        # In-flight deliveries of a dead process need nothing here: any claimer takes them
        # over once their lease deadline has passed.
        stream = f"{self._prefix}:stream"
        with _translated("open"):
            try:
                await self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            for c in await self._redis.xinfo_consumers(stream, GROUP):
                if c["pending"] == 0 and c["idle"] > IDLE_CONSUMER_MS:
                    await self._redis.xgroup_delconsumer(stream, GROUP, c["name"])
            await self._check_config()

    async def _check_config(self) -> None:
        try:
            found = {k: v for name in ADVISED for k, v in
                     (await self._redis.config_get(name)).items()}
        except ResponseError:  # managed services often disable CONFIG: nothing to check
            return
        for name, advised in ADVISED.items():
            if found.get(name) != advised:
                log.warning("redis %s is %r, not %r: acknowledged events may be lost",
                            name, found.get(name), advised)

    async def close(self) -> None:
        await self._redis.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    # --- endpoints ---------------------------------------------------------------------

    async def put_endpoint(self, endpoint: Endpoint) -> None:
        e = endpoint
        rate = "" if e.rate_limit is None else repr(e.rate_limit)
        created = "" if e.created_at is None else _us(e.created_at)
        failing = "" if e.failing_since is None else _us(e.failing_since)
        with _translated("put_endpoint"):
            await self._run(redis_scripts.PUT_ENDPOINT, e.id, "id", e.id, "url", e.url,
                            "secret", e.secret, "types", json.dumps(list(e.event_types)),
                            "rate", rate, "desc", e.description,
                            "disabled", "1" if e.disabled else "0", "reason", e.disabled_reason,
                            "created", created, "failing", failing)

    async def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        with _translated("get_endpoint"):
            h = await self._redis.hgetall(f"{self._prefix}:ep:{endpoint_id}")
        return _endpoint({str(k): str(v) for k, v in h.items()}) if h else None

    async def list_endpoints(self) -> list[Endpoint]:
        with _translated("list_endpoints"):
            found = await self._run(redis_scripts.LIST_ENDPOINTS)
        return [_endpoint(_hash(h)) for h in found]

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        with _translated("delete_endpoint"):
            return bool(await self._run(redis_scripts.DELETE_ENDPOINT, endpoint_id))

    # --- events ------------------------------------------------------------------------

    async def accept(self, events: Sequence[NewEvent], now: datetime) -> list[str]:
        if not events:
            return []
        with _translated("accept"):
            ids = await self._run(redis_scripts.ACCEPT, *_events_args(events, now))
        return [str(i) for i in ids]

    async def get_event(self, event_id: str) -> EventView | None:
        with _translated("get_event"):
            found = await self._run(redis_scripts.GET_EVENT, event_id)
        if not found:
            return None
        deliveries = tuple((_delivery(_hash(d)), tuple(_attempt(a) for a in attempts))
                           for d, attempts in found[1])
        return EventView(_event(_hash(found[0])), deliveries)

    # --- queue -------------------------------------------------------------------------

    async def claim(self, limit: int, now: datetime, lease: float,
                    put_off: Mapping[str, datetime] | None = None) -> list[Claim]:
        if limit <= 0:
            return []
        deadline = _us(now + timedelta(seconds=lease))
        busy = [x for ep, at in (put_off or {}).items() for x in (ep, _us(at))]
        with _translated("claim"):
            found = await self._run(redis_scripts.CLAIM, _us(now), deadline, limit,
                                    self.consumer, *busy)
        until = now + timedelta(seconds=lease)
        return [Claim(_delivery(_hash(d)), _event(_hash(ev)), _endpoint(_hash(ep)), token,
                      until) for token, d, ev, ep in found]

    async def settle(self, claim: Claim, attempt: Attempt, verdict: Verdict) -> None:
        await self.settle_many([(claim, attempt, verdict)])

    async def settle_many(self, outcomes: Sequence[Settled]) -> None:
        if not outcomes:
            return
        args: list[str | int] = []
        for claim, attempt, verdict in outcomes:
            next_at = None
            if verdict.state in ACTIVE_STATES:  # an active delivery is always due at some time
                next_at = verdict.next_attempt_at or attempt.at
            failing = verdict.endpoint_failing_since
            args += [claim.delivery.id, claim.lease_token, _attempt_json(attempt),
                     verdict.state.value, "" if next_at is None else _us(next_at),
                     verdict.disable_endpoint, "" if failing is None else _us(failing)]
        with _translated("settle"):  # one round trip and one script run for the lot
            await self._run(redis_scripts.SETTLE, *args)

    async def release(self, claims: Sequence[Claim],
                      not_before: Sequence[datetime] | None = None) -> None:
        if not claims:
            return
        times = [""] * len(claims) if not_before is None else [_us(t) for t in not_before]
        args = [x for c, t in zip(claims, times, strict=True)
                for x in (c.delivery.id, c.lease_token, t)]
        with _translated("release"):
            await self._run(redis_scripts.RELEASE, *args)

    async def replay(self, endpoint_id: str, since: datetime | None,
                     until: datetime | None, now: datetime) -> int:
        with _translated("replay"):
            count = await self._run(redis_scripts.REPLAY, endpoint_id,
                                    "-inf" if since is None else _us(since),
                                    "+inf" if until is None else _us(until), _us(now))
        return int(count)

    async def stats(self, now: datetime) -> QueueStats:
        with _translated("stats"):
            depth, oldest, disabled = await self._run(redis_scripts.STATS)
        first = _time(oldest)
        age = 0.0 if first is None else max(0.0, (now - first).total_seconds())
        return QueueStats(int(depth), age, int(disabled))

    async def deliveries_of(self, endpoint_id: str) -> list[Delivery]:
        with _translated("deliveries_of"):
            found = await self._run(redis_scripts.DELIVERIES_OF, endpoint_id)
        return [_delivery(_hash(h)) for h in found]
