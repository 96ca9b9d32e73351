"""The Redis backend of `service.store.Store`: several service processes, on several machines,
share one queue. Run Redis with `appendonly yes`, `appendfsync always` (an accepted event is
then on disk before `accept` returns) and `maxmemory-policy noeviction` (nothing is evicted).

Keys, all under `<prefix>:` (times are integer microseconds since the epoch):
    format               str   the keyspace's format version (`codec.FORMAT`), SET NX by the
                               first open; a keyspace without it is of format 1, one of
                               another version is refused (see `codec`)
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
Every multi-key step is one Lua script (`lua.queue`, `lua.monitors`): atomic between
processes, one transaction in the AOF. The store is built from parts it holds: the connection
(`connection`: pool, key prefix, script runner) and, on that same connection, the monitor and
follower operations (`monitors`), to which it hands those calls; converters are in `codec`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import RedisError, ResponseError

from service.models import (
    ACTIVE_STATES,
    Attempt,
    Claim,
    Delivery,
    Endpoint,
    EventView,
    MatchRecord,
    Monitor,
    MonitorEvent,
    NewEvent,
    QueueStats,
    Stored,
    Verdict,
)
from service.store import Settled
from service.store.redis.codec import (
    FORMAT,
    check_format,
    decode_attempt,
    decode_delivery,
    decode_endpoint,
    decode_event,
    decode_optional_time,
    encode_attempt,
    encode_time,
    events_args,
    flat_hash,
    translated,
)
from service.store.redis.connection import RedisConnection
from service.store.redis.lua import queue as queue_scripts
from service.store.redis.monitors import RedisMonitors

GROUP = "workers"
IDLE_CONSUMER_MS = 3_600_000  # consumers with nothing pending and idle this long are removed
KNOWN_ENDPOINTS = 20_000  # endpoints `claim` keeps decoded before it forgets them
# Without these an acknowledged event can be lost: to a crash before the AOF write reached the
# disk, or to eviction under memory pressure.
ADVISED = {"appendonly": "yes", "appendfsync": "always", "maxmemory-policy": "noeviction"}

log = logging.getLogger(__name__)


class RedisStore:
    """`Store` on Redis; one instance is one consumer of the shared group. It runs the queue
    and endpoint operations itself and hands the monitor and follower ones to its
    `RedisMonitors`, both on one `RedisConnection`."""

    def __init__(self, url: str, *, prefix: str = "crypitor", timeout: float = 10.0,
                 max_connections: int = 32) -> None:
        self._conn = RedisConnection(url, prefix, timeout=timeout,
                                     max_connections=max_connections)
        self._monitors = RedisMonitors(self._conn)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._claimed_endpoints: dict[tuple[str, ...], Endpoint] = {}  # see `claim`

    async def open(self) -> None:
        # In-flight deliveries of a dead process need nothing here: any claimer takes them
        # over once their lease deadline has passed.
        redis, stream = self._conn.redis, self._conn.key("stream")
        with translated("open"):
            # Before anything is written: a keyspace of an unknown format is left as it is.
            key = self._conn.key("format")
            await redis.set(key, FORMAT, nx=True)
            found = await redis.get(key)
            check_format(None if found is None else str(found), f"the keyspace {key}")
            try:
                await redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            for c in await redis.xinfo_consumers(stream, GROUP):
                if c["pending"] == 0 and c["idle"] > IDLE_CONSUMER_MS:
                    await redis.xgroup_delconsumer(stream, GROUP, c["name"])
            await self._check_config()

    async def _check_config(self) -> None:
        try:
            found = {k: v for name in ADVISED for k, v in
                     (await self._conn.redis.config_get(name)).items()}
        except ResponseError:  # managed services often disable CONFIG: nothing to check
            return
        for name, advised in ADVISED.items():
            if found.get(name) != advised:
                log.warning("redis %s is %r, not %r: acknowledged events may be lost",
                            name, found.get(name), advised)

    async def close(self) -> None:
        await self._conn.close()

    async def ping(self) -> bool:
        try:
            return bool(await self._conn.redis.ping())
        except (RedisError, OSError):
            return False

    # --- endpoints ---------------------------------------------------------------------

    async def put_endpoint(self, endpoint: Endpoint) -> None:
        e = endpoint
        rate = "" if e.rate_limit is None else repr(e.rate_limit)
        created = "" if e.created_at is None else encode_time(e.created_at)
        failing = "" if e.failing_since is None else encode_time(e.failing_since)
        with translated("put_endpoint"):
            await self._conn.run(queue_scripts.PUT_ENDPOINT, e.id, "id", e.id, "url", e.url,
                                 "secret", e.secret, "types", json.dumps(list(e.event_types)),
                                 "rate", rate, "desc", e.description,
                                 "disabled", "1" if e.disabled else "0",
                                 "reason", e.disabled_reason,
                                 "created", created, "failing", failing)

    async def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        with translated("get_endpoint"):
            h = await self._conn.redis.hgetall(self._conn.key("ep", endpoint_id))
        return decode_endpoint({str(k): str(v) for k, v in h.items()}) if h else None

    async def list_endpoints(self) -> list[Endpoint]:
        with translated("list_endpoints"):
            found = await self._conn.run(queue_scripts.LIST_ENDPOINTS)
        return [decode_endpoint(flat_hash(h)) for h in found]

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        with translated("delete_endpoint"):
            return bool(await self._conn.run(queue_scripts.DELETE_ENDPOINT, endpoint_id))

    # --- events ------------------------------------------------------------------------

    async def accept(self, events: Sequence[NewEvent], now: datetime) -> list[str]:
        if not events:
            return []
        with translated("accept"):
            ids = await self._conn.run_replicated(queue_scripts.ACCEPT, *events_args(events, now))
        return [str(i) for i in ids]

    async def get_event(self, event_id: str) -> EventView | None:
        with translated("get_event"):
            found = await self._conn.run(queue_scripts.GET_EVENT, event_id)
        if not found:
            return None
        deliveries = tuple((decode_delivery(flat_hash(d)),
                            tuple(decode_attempt(a) for a in attempts))
                           for d, attempts in found[1])
        return EventView(decode_event(flat_hash(found[0])), deliveries)

    # --- queue -------------------------------------------------------------------------

    async def claim(self, limit: int, now: datetime, lease: float,
                    put_off: Mapping[str, datetime] | None = None) -> list[Claim]:
        if limit <= 0:
            return []
        deadline = encode_time(now + timedelta(seconds=lease))
        busy = [x for ep, at in (put_off or {}).items() for x in (ep, encode_time(at))]
        with translated("claim"):
            found = await self._conn.run(queue_scripts.CLAIM, encode_time(now), deadline, limit,
                                         self.consumer, *busy)
        until = now + timedelta(seconds=lease)
        # a claim's rows share a few times and endpoints: each is decoded once (an endpoint
        # across claims, keyed by its whole hash, so a changed one is decoded anew)
        times: dict[str, datetime] = {}
        known = self._claimed_endpoints
        if len(known) > KNOWN_ENDPOINTS:
            known.clear()
        claims = []
        for token, d, ev, ep in found:
            key = tuple(ep)
            endpoint = known.get(key)
            if endpoint is None:
                endpoint = known[key] = decode_endpoint(flat_hash(ep))
            claims.append(Claim(decode_delivery(flat_hash(d), times),
                                decode_event(flat_hash(ev), times), endpoint, token, until))
        return claims

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
            args += [claim.delivery.id, claim.lease_token, encode_attempt(attempt),
                     verdict.state.value, "" if next_at is None else encode_time(next_at),
                     verdict.disable_endpoint, "" if failing is None else encode_time(failing)]
        with translated("settle"):  # one round trip and one script run for the lot
            await self._conn.run(queue_scripts.SETTLE, *args)

    async def release(self, claims: Sequence[Claim],
                      not_before: Sequence[datetime] | None = None) -> None:
        if not claims:
            return
        times = [""] * len(claims) if not_before is None else [encode_time(t) for t in not_before]
        args = [x for c, t in zip(claims, times, strict=True)
                for x in (c.delivery.id, c.lease_token, t)]
        with translated("release"):
            await self._conn.run(queue_scripts.RELEASE, *args)

    async def replay(self, endpoint_id: str, since: datetime | None,
                     until: datetime | None, now: datetime) -> int:
        with translated("replay"):
            count = await self._conn.run(queue_scripts.REPLAY, endpoint_id,
                                         "-inf" if since is None else encode_time(since),
                                         "+inf" if until is None else encode_time(until),
                                         encode_time(now))
        return int(count)

    async def stats(self, now: datetime) -> QueueStats:
        with translated("stats"):
            depth, oldest, disabled, due, leased = await self._conn.run(queue_scripts.STATS,
                                                                        encode_time(now))
        first = decode_optional_time(oldest)
        age = 0.0 if first is None else max(0.0, (now - first).total_seconds())
        return QueueStats(int(depth), age, int(disabled), int(due), int(leased))

    async def deliveries_of(self, endpoint_id: str) -> list[Delivery]:
        with translated("deliveries_of"):
            found = await self._conn.run(queue_scripts.DELIVERIES_OF, endpoint_id)
        return [decode_delivery(flat_hash(h)) for h in found]

    # --- address monitors and followers: the `RedisMonitors` part ----------------------

    async def put_monitor(self, monitor: Monitor) -> None:
        await self._monitors.put_monitor(monitor)

    async def replace_monitor(self, monitor: Monitor) -> bool:
        return await self._monitors.replace_monitor(monitor)

    async def get_monitor(self, monitor_id: str) -> Monitor | None:
        return await self._monitors.get_monitor(monitor_id)

    async def list_monitors(self, chain: str | None = None) -> list[Monitor]:
        return await self._monitors.list_monitors(chain)

    async def delete_monitor(self, monitor_id: str) -> bool:
        return await self._monitors.delete_monitor(monitor_id)

    async def monitors_version(self) -> int:
        return await self._monitors.monitors_version()

    async def get_cursor(self, name: str) -> dict[str, Any] | None:
        return await self._monitors.get_cursor(name)

    async def advance(self, name: str, state: Mapping[str, Any], events: Sequence[NewEvent],
                      matches: Sequence[MatchRecord], now: datetime, *,
                      holder: str | None = None) -> list[Stored]:
        return await self._monitors.advance(name, state, events, matches, now, holder=holder)

    async def hold_cursor(self, name: str, holder: str, ttl: float) -> bool:
        return await self._monitors.hold_cursor(name, holder, ttl)

    async def let_go_cursor(self, name: str, holder: str) -> None:
        await self._monitors.let_go_cursor(name, holder)

    async def monitor_events(self, monitor_id: str, tx_hash: str | None = None,
                             address: str | None = None, limit: int = 100,
                             before: str | None = None) -> list[MonitorEvent]:
        return await self._monitors.monitor_events(monitor_id, tx_hash, address, limit, before)

    async def endpoint_monitors(self, endpoint_id: str, limit: int = 100) -> list[str]:
        return await self._monitors.endpoint_monitors(endpoint_id, limit)
