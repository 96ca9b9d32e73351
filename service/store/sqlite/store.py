"""SQLite backend of the store: the embedded default, one process, durable before every ack.

All writes go through one writer task that gathers whatever operations are waiting into a
single transaction on a dedicated thread (group commit); reads have their own connection and
thread, which WAL lets run beside the writer. Those connections and threads are `file`; the
SQL itself is in `schema`, `events`, `queue` and `monitors`, plain functions of a connection
that this class runs in its transactions.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from service import CursorTaken, StoreError
from service.models import (
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
from service.store.sqlite import events as event_sql
from service.store.sqlite import monitors as monitor_sql
from service.store.sqlite import queue as queue_sql
from service.store.sqlite import schema
from service.store.sqlite.file import SqliteFile
from service.store.times import to_us

PRUNE_EVERY = 3600 * 1_000_000  # µs of event time between sweeps of expired idempotency keys


class _Accepts:
    """The accept calls that joined one write: (events, now) each, the write's future (their
    ids, call by call) and each call's own future, which the write's answer is handed to.
    A call has a future of its own, so a caller that goes away cancels only its own wait
    (cheaper than `asyncio.shield` around the shared one, which this runs per request)."""

    __slots__ = ("calls", "future", "waiters")

    def __init__(self) -> None:
        self.calls: list[tuple[list[NewEvent], datetime]] = []
        self.waiters: list[asyncio.Future[list[str]]] = []
        self.future: asyncio.Future[list[list[str]]]

    def answer(self, done: asyncio.Future[list[list[str]]]) -> None:
        """The write's outcome to every call still waiting."""
        if done.cancelled():
            error: BaseException | None = asyncio.CancelledError()
        else:
            error = done.exception()
        for i, waiter in enumerate(self.waiters):
            if waiter.done():
                continue
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(done.result()[i])


class SqliteStore:
    """The `Store` on one SQLite file; `commits` counts the write transactions made."""

    def __init__(self, path: Path, max_batch: int = 1000) -> None:
        self.path = path
        self._file = SqliteFile(path, max_batch, self._setup, self._forget_endpoints)
        # Writer-thread state: the endpoints fan-out reads (reloaded after any endpoint
        # write) and when idempotency keys were last pruned.
        self._endpoints: event_sql.Routing | None = None
        self._pruned_at = -PRUNE_EVERY
        self._ids = schema.IdClock()
        # Cursor leases: the file is locked to this one process, so a table in memory is
        # exact. name -> (holder, deadline on the monotonic clock)
        self._cursor_leases: dict[str, tuple[str, float]] = {}
        self._claimed_endpoints: dict[tuple[Any, ...], Endpoint] = {}  # writer thread only
        self._accepting: _Accepts | None = None  # accept calls waiting for the next write

    @property
    def commits(self) -> int:
        return self._file.commits

    # --- life cycle ----------------------------------------------------------------------
    async def open(self) -> None:
        await self._file.open()

    async def close(self) -> None:
        await self._file.close()

    async def ping(self) -> bool:
        try:
            return await self._file.read(lambda c: c.execute("SELECT 1").fetchone() == (1,))
        except StoreError:
            return False

    def _setup(self, conn: sqlite3.Connection) -> None:
        """The writer connection as it opens, on the writer thread."""
        schema.check_version(conn, self.path)
        schema.upgrade(conn)
        self._ids = schema.IdClock.resume(conn)
        # Whatever is leased belonged to a process that is gone: take it up at once.
        queue_sql.clear_leases(conn)
        self._endpoints = None

    def _forget_endpoints(self) -> None:
        self._endpoints = None  # it may hold rows that were rolled back

    def _fanout(self, conn: sqlite3.Connection) -> event_sql.Routing:
        if self._endpoints is None:
            self._endpoints = event_sql.Routing(queue_sql.list_endpoints(conn))
        return self._endpoints

    # --- endpoints -----------------------------------------------------------------------
    async def put_endpoint(self, endpoint: Endpoint) -> None:
        def op(conn: sqlite3.Connection) -> None:
            self._endpoints = None
            queue_sql.put_endpoint(conn, endpoint)
        await self._file.write(op)

    async def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        return await self._file.read(lambda c: queue_sql.get_endpoint(c, endpoint_id))

    async def list_endpoints(self) -> list[Endpoint]:
        return await self._file.read(queue_sql.list_endpoints)

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            self._endpoints = None
            return queue_sql.delete_endpoint(conn, endpoint_id)
        return await self._file.write(op)

    # --- events --------------------------------------------------------------------------
    async def accept(self, events: Sequence[NewEvent], now: datetime) -> list[str]:
        # Every accept waiting for the same group commit joins one operation: one statement
        # per table and one fan-out row per endpoint for all of them, not for each (single
        # events came one per request, each with its own statements and fan-out row).
        # serialised here, so data that is not JSON fails its own call, not the whole group
        events = [ev if ev.data_json is not None else ev._replace(data_json=json.dumps(ev.data))
                  for ev in events]
        group = self._accepting
        if group is None or group.future.done():  # done: its write failed before it ran
            group = _Accepts()
            group.future = self._file.submit(partial(self._accept_group, group))
            group.future.add_done_callback(group.answer)
            self._accepting = group
        waiter: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        group.calls.append((events, now))
        group.waiters.append(waiter)
        return await waiter

    def _accept_group(self, group: _Accepts, conn: sqlite3.Connection) -> list[list[str]]:
        if self._accepting is group:  # accepts from now on wait for the next commit
            self._accepting = None
        now = max(at for _, at in group.calls)
        return event_sql.accept_calls(conn, group.calls, self._fanout(conn), self._prune(now),
                                      self._ids)

    def _prune(self, now: datetime) -> bool:
        """Whether this write should sweep expired idempotency keys (once an hour)."""
        at = to_us(now)
        prune = at - self._pruned_at >= PRUNE_EVERY
        if prune:
            self._pruned_at = at
        return prune

    async def get_event(self, event_id: str) -> EventView | None:
        return await self._file.read(lambda c: event_sql.get_event(c, event_id))

    # --- queue ---------------------------------------------------------------------------
    async def claim(self, limit: int, now: datetime, lease: float,
                    put_off: Mapping[str, datetime] | None = None) -> list[Claim]:
        # a write: the lease is set in the same serial transaction that picks the rows, so
        # two concurrent claims can never take the same delivery
        busy = dict(put_off or {})
        return await self._file.write(
            lambda c: queue_sql.claim(c, limit, now, lease, busy, self._claimed_endpoints),
            durable=False)

    async def settle(self, claim: Claim, attempt: Attempt, verdict: Verdict) -> None:
        await self.settle_many([(claim, attempt, verdict)])

    async def settle_many(self, outcomes: Sequence[Settled]) -> None:
        outcomes = list(outcomes)

        def op(conn: sqlite3.Connection) -> None:
            if any(v.disable_endpoint for _, _, v in outcomes):
                self._endpoints = None
            queue_sql.settle(conn, outcomes)
        # lost in a power cut, an attempt is simply made again (at least once); disabling
        # an endpoint is kept like any change a person makes
        await self._file.write(op, durable=any(v.disable_endpoint for _, _, v in outcomes))

    async def release(self, claims: Sequence[Claim],
                      not_before: Sequence[datetime] | None = None) -> None:
        claims = list(claims)
        times = None if not_before is None else list(not_before)
        await self._file.write(lambda c: queue_sql.release(c, claims, times), durable=False)

    async def replay(self, endpoint_id: str, since: datetime | None,
                     until: datetime | None, now: datetime) -> int:
        return await self._file.write(
            lambda c: queue_sql.replay(c, endpoint_id, since, until, now))

    async def stats(self, now: datetime) -> QueueStats:
        return await self._file.read(lambda c: queue_sql.stats(c, now))

    async def deliveries_of(self, endpoint_id: str) -> list[Delivery]:
        return await self._file.read(lambda c: queue_sql.deliveries_of(c, endpoint_id))

    # --- address monitors and followers --------------------------------------------------
    async def put_monitor(self, monitor: Monitor) -> None:
        packed = monitor_sql.pack_addresses(monitor.addresses)
        await self._file.write(lambda c: monitor_sql.put_monitor(c, monitor, packed))

    async def replace_monitor(self, monitor: Monitor) -> bool:
        packed = monitor_sql.pack_addresses(monitor.addresses)
        return await self._file.write(
            lambda c: monitor_sql.replace_monitor(c, monitor, packed))

    async def get_monitor(self, monitor_id: str) -> Monitor | None:
        return await self._file.read(lambda c: monitor_sql.get_monitor(c, monitor_id))

    async def list_monitors(self, chain: str | None = None) -> list[Monitor]:
        return await self._file.read(lambda c: monitor_sql.list_monitors(c, chain))

    async def delete_monitor(self, monitor_id: str) -> bool:
        return await self._file.write(lambda c: monitor_sql.delete_monitor(c, monitor_id))

    async def monitors_version(self) -> int:
        return await self._file.read(monitor_sql.monitors_version)

    async def get_cursor(self, name: str) -> dict[str, Any] | None:
        return await self._file.read(lambda c: monitor_sql.get_cursor(c, name))

    async def advance(self, name: str, state: Mapping[str, Any], events: Sequence[NewEvent],
                      matches: Sequence[MatchRecord], now: datetime, *,
                      holder: str | None = None) -> list[Stored]:
        if len(events) != len(matches):
            raise ValueError(f"{len(events)} events but {len(matches)} matches")
        if holder is not None and not self._holds(name, holder):
            raise CursorTaken(f"cursor {name}: another holder has it")
        saved = json.dumps(dict(state))  # a state that is not JSON fails here, not later
        events, matches = list(events), list(matches)

        def op(conn: sqlite3.Connection) -> list[Stored]:
            return monitor_sql.advance(conn, name, saved, events, matches, now,
                                       self._fanout(conn), self._prune(now), self._ids)
        return await self._file.write(op)  # durable: FULL sync before the follower moves on

    async def hold_cursor(self, name: str, holder: str, ttl: float) -> bool:
        current = self._cursor_leases.get(name)
        if current is not None and current[0] != holder and current[1] > time.monotonic():
            return False
        self._cursor_leases[name] = (holder, time.monotonic() + ttl)
        return True

    async def let_go_cursor(self, name: str, holder: str) -> None:
        if self._holds(name, holder):
            del self._cursor_leases[name]

    def _holds(self, name: str, holder: str) -> bool:
        current = self._cursor_leases.get(name)
        return current is not None and current[0] == holder and current[1] > time.monotonic()

    async def monitor_events(self, monitor_id: str, tx_hash: str | None = None,
                             address: str | None = None, limit: int = 100,
                             before: str | None = None) -> list[MonitorEvent]:
        return await self._file.read(lambda c: monitor_sql.monitor_events(
            c, monitor_id, tx_hash, address, limit, before))

    async def endpoint_monitors(self, endpoint_id: str, limit: int = 100) -> list[str]:
        return await self._file.read(
            lambda c: monitor_sql.endpoint_monitors(c, endpoint_id, limit))
