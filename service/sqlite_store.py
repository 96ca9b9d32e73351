"""SQLite backend of the store: the embedded default, one process, durable before every ack.

All writes go through one writer task that gathers whatever operations are waiting into a
single transaction on a dedicated thread (group commit); reads have their own connection and
thread, which WAL lets run beside the writer. The SQL itself is in `sqlite_schema`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TypeVar

from service import CursorTaken, StoreError
from service import sqlite_schema as sql
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
    Verdict,
)
from service.store import Settled

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], T]
PRUNE_EVERY = 3600 * 1_000_000  # µs of event time between sweeps of expired idempotency keys


@dataclass
class _Pending:
    op: Op[Any]
    future: asyncio.Future[Any]
    durable: bool  # must survive a power loss before the caller hears back


def _failure(exc: BaseException) -> BaseException:
    if isinstance(exc, sqlite3.Error):
        error = StoreError(f"sqlite: {exc}")
        error.__cause__ = exc
        return error
    return exc  # our own bug (e.g. data that is not JSON): the caller sees it as it is


class SqliteStore:
    """The `Store` on one SQLite file; `commits` counts the write transactions made."""

    def __init__(self, path: Path, max_batch: int = 1000) -> None:
        self.path = path
        self.commits = 0
        self._max_batch = max_batch
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._lock: IO[str] | None = None
        self._queue: asyncio.Queue[_Pending | None] | None = None
        self._task: asyncio.Task[None] | None = None
        # Writer-thread state: the endpoints fan-out reads (reloaded after any endpoint
        # write) and when idempotency keys were last pruned.
        self._endpoints: list[Endpoint] | None = None
        self._pruned_at = -PRUNE_EVERY
        self._synced = True  # the writer connection's synchronous mode is FULL
        self._ids = sql.IdClock()
        # Cursor leases: the file is locked to this one process, so a table in memory is
        # exact. name -> (holder, deadline on the monotonic clock)
        self._cursor_leases: dict[str, tuple[str, float]] = {}

    # --- life cycle ----------------------------------------------------------------------
    async def open(self) -> None:
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="sqlite-reader")
        try:
            self._wconn = await loop.run_in_executor(self._writer, self._connect_writer)
            self._rconn = await loop.run_in_executor(self._reader, self._connect_reader)
        except (sqlite3.Error, OSError) as exc:
            await self._disconnect()
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        except BaseException:
            await self._disconnect()
            raise
        self._queue = asyncio.Queue()
        self._task = loop.create_task(self._write_loop(self._queue, self._writer, self._wconn))

    async def close(self) -> None:
        if self._queue is not None:
            self._queue.put_nowait(None)  # the writer stops after everything already queued
            self._queue = None  # and new writes are refused
        if self._task is not None:
            await self._task
            self._task = None
        await self._disconnect()

    async def ping(self) -> bool:
        try:
            return await self._read(lambda c: c.execute("SELECT 1").fetchone() == (1,))
        except StoreError:
            return False

    def _connect_writer(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Clearing every lease at open is only right if no other process uses the file.
        lock = open(self.path.with_name(self.path.name + ".lock"), "a")  # noqa: SIM115
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StoreError(f"{self.path} is in use by another store") from None
        self._lock = lock
        # used by the loop for statements and by the writer thread for commits, never both
        # at once (the write loop awaits each commit)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode != "wal":
                raise sqlite3.OperationalError(f"journal_mode is {mode}, WAL is required")
            # FULL syncs the WAL at every commit: with NORMAL a power loss may undo the last
            # commits, i.e. events already acknowledged with a 202.
            conn.execute("PRAGMA synchronous = FULL")
            self._synced = True
            sql.check_version(conn)
            sql.upgrade(conn)
            self._ids = sql.IdClock.resume(conn)
            # Whatever is leased belonged to a process that is gone: take it up at once.
            sql.clear_leases(conn)
        except BaseException:
            conn.close()
            raise
        self._endpoints = None
        return conn

    def _connect_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA query_only = 1")
        return conn

    async def _disconnect(self) -> None:
        loop = asyncio.get_running_loop()
        pairs = ((self._writer, self._wconn), (self._reader, self._rconn))
        lock = self._lock
        self._writer = self._reader = self._wconn = self._rconn = self._lock = None
        for pool, conn in pairs:
            if pool is not None:
                if conn is not None:  # closed on the thread that made it
                    with contextlib.suppress(sqlite3.Error):
                        await loop.run_in_executor(pool, conn.close)
                pool.shutdown(wait=False)
        if lock is not None:
            lock.close()  # releases the flock

    # --- the writer: group commit ----------------------------------------------------------
    async def _write(self, op: Op[T], durable: bool = True) -> T:
        """Run `op` in the next group commit. `durable=False` is for writes whose loss in a
        power cut only repeats work (a settled attempt is delivered again, a lease ends):
        a commit holding only those skips the fsync. A process crash loses neither kind."""
        if self._queue is None:
            raise StoreError("the store is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(op, future, durable))
        return await future

    async def _write_loop(self, queue: asyncio.Queue[_Pending | None], pool: ThreadPoolExecutor,
                          conn: sqlite3.Connection) -> None:
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            first = await queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    stop = True
                    break
                batch.append(item)
            # a caller cancelled before its turn was promised nothing: skip its work
            live = [p for p in batch if not p.future.done()]
            if not live:
                continue
            try:
                outcomes = self._apply(conn, [p.op for p in live],
                                       any(p.durable for p in live))
                await loop.run_in_executor(pool, self._commit, conn)
            except Exception as exc:
                self._endpoints = None  # it may hold rows that were rolled back
                outcomes = [(False, exc)] * len(live)
            else:
                self.commits += 1
            for pending, (ok, value) in zip(live, outcomes, strict=True):
                if pending.future.done():
                    continue
                if ok:
                    pending.future.set_result(value)
                else:
                    pending.future.set_exception(_failure(value))

    def _apply(self, conn: sqlite3.Connection, ops: list[Op[Any]],
               durable: bool) -> list[tuple[bool, Any]]:
        """Every op in one transaction, each in a savepoint so one failing op is undone alone
        and the rest still commit; the transaction is left open for `_commit`.

        This runs on the event loop: the statements take microseconds each, and a thread
        would hand the GIL back and forth at every row SQLite returns (a third of the
        delivery path's time went there). Only the commit, which waits for the disk, runs
        on the writer thread."""
        if durable != self._synced:  # FULL syncs the WAL at commit; NORMAL at checkpoints
            conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._synced = durable
        outcomes: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                conn.execute("SAVEPOINT op")
                try:
                    outcomes.append((True, op(conn)))
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    outcomes.append((False, exc))
                conn.execute("RELEASE op")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes

    @staticmethod
    def _commit(conn: sqlite3.Connection) -> None:
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    async def _read(self, op: Op[T]) -> T:
        if self._reader is None or self._rconn is None:
            raise StoreError("the store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._reader, self._snapshot, self._rconn, op)
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite: {exc}") from exc

    @staticmethod
    def _snapshot(conn: sqlite3.Connection, op: Op[T]) -> T:
        conn.execute("BEGIN")  # one snapshot for a read of several statements
        try:
            return op(conn)
        finally:
            conn.execute("ROLLBACK")

    def _fanout(self, conn: sqlite3.Connection) -> list[Endpoint]:
        if self._endpoints is None:
            self._endpoints = sql.list_endpoints(conn)
        return self._endpoints

    # --- endpoints -----------------------------------------------------------------------
    async def put_endpoint(self, endpoint: Endpoint) -> None:
        def op(conn: sqlite3.Connection) -> None:
            self._endpoints = None
            sql.put_endpoint(conn, endpoint)
        await self._write(op)

    async def get_endpoint(self, endpoint_id: str) -> Endpoint | None:
        return await self._read(lambda c: sql.get_endpoint(c, endpoint_id))

    async def list_endpoints(self) -> list[Endpoint]:
        return await self._read(sql.list_endpoints)

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            self._endpoints = None
            return sql.delete_endpoint(conn, endpoint_id)
        return await self._write(op)

    # --- events --------------------------------------------------------------------------
    async def accept(self, events: Sequence[NewEvent], now: datetime) -> list[str]:
        events = list(events)  # the caller may change its list while the write waits

        def op(conn: sqlite3.Connection) -> list[str]:
            return sql.accept(conn, events, now, self._fanout(conn), self._prune(now),
                              self._ids)
        return await self._write(op)

    def _prune(self, now: datetime) -> bool:
        """Whether this write should sweep expired idempotency keys (once an hour)."""
        at = sql.to_us(now)
        prune = at - self._pruned_at >= PRUNE_EVERY
        if prune:
            self._pruned_at = at
        return prune

    async def get_event(self, event_id: str) -> EventView | None:
        return await self._read(lambda c: sql.get_event(c, event_id))

    # --- queue ---------------------------------------------------------------------------
    async def claim(self, limit: int, now: datetime, lease: float) -> list[Claim]:
        # a write: the lease is set in the same serial transaction that picks the rows, so
        # two concurrent claims can never take the same delivery
        return await self._write(lambda c: sql.claim(c, limit, now, lease), durable=False)

    async def settle(self, claim: Claim, attempt: Attempt, verdict: Verdict) -> None:
        await self.settle_many([(claim, attempt, verdict)])

    async def settle_many(self, outcomes: Sequence[Settled]) -> None:
        outcomes = list(outcomes)

        def op(conn: sqlite3.Connection) -> None:
            if any(v.disable_endpoint for _, _, v in outcomes):
                self._endpoints = None
            sql.settle(conn, outcomes)
        # lost in a power cut, an attempt is simply made again (at least once); disabling
        # an endpoint is kept like any change a person makes
        await self._write(op, durable=any(v.disable_endpoint for _, _, v in outcomes))

    async def release(self, claims: Sequence[Claim]) -> None:
        claims = list(claims)
        await self._write(lambda c: sql.release(c, claims), durable=False)

    async def replay(self, endpoint_id: str, since: datetime | None,
                     until: datetime | None, now: datetime) -> int:
        return await self._write(lambda c: sql.replay(c, endpoint_id, since, until, now))

    async def stats(self, now: datetime) -> QueueStats:
        return await self._read(lambda c: sql.stats(c, now))

    async def deliveries_of(self, endpoint_id: str) -> list[Delivery]:
        return await self._read(lambda c: sql.deliveries_of(c, endpoint_id))

    # --- address monitors and followers --------------------------------------------------
    async def put_monitor(self, monitor: Monitor) -> None:
        packed = sql.pack_addresses(monitor.addresses)
        await self._write(lambda c: sql.put_monitor(c, monitor, packed))

    async def replace_monitor(self, monitor: Monitor) -> bool:
        packed = sql.pack_addresses(monitor.addresses)
        return await self._write(lambda c: sql.replace_monitor(c, monitor, packed))

    async def get_monitor(self, monitor_id: str) -> Monitor | None:
        return await self._read(lambda c: sql.get_monitor(c, monitor_id))

    async def list_monitors(self, chain: str | None = None) -> list[Monitor]:
        return await self._read(lambda c: sql.list_monitors(c, chain))

    async def delete_monitor(self, monitor_id: str) -> bool:
        return await self._write(lambda c: sql.delete_monitor(c, monitor_id))

    async def monitors_version(self) -> int:
        return await self._read(sql.monitors_version)

    async def get_cursor(self, name: str) -> dict[str, Any] | None:
        return await self._read(lambda c: sql.get_cursor(c, name))

    async def advance(self, name: str, state: Mapping[str, Any], events: Sequence[NewEvent],
                      matches: Sequence[MatchRecord], now: datetime, *,
                      holder: str | None = None) -> list[str]:
        if len(events) != len(matches):
            raise ValueError(f"{len(events)} events but {len(matches)} matches")
        if holder is not None and not self._holds(name, holder):
            raise CursorTaken(f"cursor {name}: another holder has it")
        saved = json.dumps(dict(state))  # a state that is not JSON fails here, not later
        events, matches = list(events), list(matches)

        def op(conn: sqlite3.Connection) -> list[str]:
            return sql.advance(conn, name, saved, events, matches, now, self._fanout(conn),
                               self._prune(now), self._ids)
        return await self._write(op)  # durable: FULL sync before the follower moves on

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
                             address: str | None = None,
                             limit: int = 100) -> list[MonitorEvent]:
        return await self._read(
            lambda c: sql.monitor_events(c, monitor_id, tx_hash, address, limit))
