"""The connections and threads under `SqliteStore`: the lock that keeps a file to one process,
the writer task that runs waiting operations in one transaction (group commit) and commits it
on its own thread, and the reader connection, whose thread WAL lets run beside the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

from core.files import private_database, private_file
from service import StoreError

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], T]


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


class SqliteFile:
    """One SQLite file, opened for a writer task and a reader; `commits` counts the write
    transactions made. `setup` runs on the writer connection as it opens (on its thread, before
    any write), `rolled_back` after every group commit that failed."""

    def __init__(self, path: Path, max_batch: int, setup: Callable[[sqlite3.Connection], None],
                 rolled_back: Callable[[], None]) -> None:
        self.path = path
        self.commits = 0
        self._max_batch = max_batch
        self._setup = setup
        self._rolled_back = rolled_back
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._lock: IO[str] | None = None
        self._queue: asyncio.Queue[_Pending | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._synced = True  # the writer connection's synchronous mode is FULL

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

    def _connect_writer(self) -> sqlite3.Connection:
        private_database(self.path)  # it holds signing secrets: 0600 in a 0700 directory
        # Clearing every lease at open is only right if no other process uses the file.
        lock = open(private_file(self.path.with_name(self.path.name + ".lock")),  # noqa: SIM115
                    "a")
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
            self._setup(conn)
        except BaseException:
            conn.close()
            raise
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
    async def write(self, op: Op[T], durable: bool = True) -> T:
        """Run `op` in the next group commit. `durable=False` is for writes whose loss in a
        power cut only repeats work (a settled attempt is delivered again, a lease ends):
        a commit holding only those skips the fsync. A process crash loses neither kind."""
        return await self.submit(op, durable)

    def submit(self, op: Op[T], durable: bool = True) -> asyncio.Future[T]:
        """`write`'s future, for a caller that shares it with others: `op` runs in the next
        group commit unless the future is cancelled before its turn."""
        if self._queue is None:
            raise StoreError("the store is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(op, future, durable))
        return future

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
                self._rolled_back()  # the store's caches may hold rows that were rolled back
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

    async def read(self, op: Op[T]) -> T:
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
