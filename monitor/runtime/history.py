"""Uptime history: hourly success counts per target in SQLite under data_dir.

Counting happens in memory on the event loop; a flush every minute writes the counts in
one transaction on a worker thread, so a restart keeps 24 h / 7 d / 30 d uptime.
The schema's version is `PRAGMA user_version` (VERSION); a file from before it reads 0 and
has the same table, so it is stamped and read as it is; any other version is refused with
`core.formats.FormatError` naming the file.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from core.files import private_database
from core.formats import sqlite_version

WINDOWS = {"24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
RETENTION = 31 * 86400

VERSION = 1
READABLE = (0, VERSION)  # 0: written before the schema carried a version, same table
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS uptime (
    target TEXT NOT NULL, hour INTEGER NOT NULL, ok INTEGER NOT NULL, total INTEGER NOT NULL,
    PRIMARY KEY (target, hour)
) WITHOUT ROWID;
PRAGMA user_version = {VERSION};
"""


class History(Protocol):
    """What the monitor needs of an uptime history: this one (SQLite, one instance) or the
    cluster's (`monitor.cluster.ClusterHistory`, Redis)."""

    def record(self, target: str, success: bool, at: float) -> None: ...
    async def flush(self) -> None: ...
    async def ratios(self, targets: Iterable[str]) -> dict[str, dict[str, float | None]]: ...
    def close(self) -> None: ...


class UptimeHistory:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        private_database(path)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()  # one thread at a time on the connection
        try:  # before anything touches the file
            sqlite_version(self._db, f"the uptime history {path}", READABLE)
        except BaseException:
            self._db.close()
            raise
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        self._pending: dict[tuple[str, int], list[int]] = {}

    def record(self, target: str, success: bool, at: float) -> None:
        counts = self._pending.get((target, int(at // 3600)))
        if counts is None:
            counts = self._pending[(target, int(at // 3600))] = [0, 0]
        counts[0] += success
        counts[1] += 1

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        if pending:
            await asyncio.to_thread(self._write, pending)

    def _write(self, pending: dict[tuple[str, int], list[int]]) -> None:
        rows = [(t, h, c[0], c[1]) for (t, h), c in pending.items()]
        cutoff = int((self._clock() - RETENTION) // 3600)
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO uptime VALUES (?, ?, ?, ?) ON CONFLICT (target, hour) DO UPDATE"
                " SET ok = ok + excluded.ok, total = total + excluded.total", rows)
            self._db.execute("DELETE FROM uptime WHERE hour < ?", (cutoff,))
            self._db.execute("COMMIT")

    async def ratios(self, targets: Iterable[str]) -> dict[str, dict[str, float | None]]:
        """Share of successful probes per target over each window (None: no probe yet)."""
        now = self._clock()
        totals = await asyncio.to_thread(self._read, now)
        for (target, hour), (ok, total) in self._pending.items():
            for window, seconds in WINDOWS.items():
                if hour >= int((now - seconds) // 3600):
                    acc = totals.setdefault((target, window), [0, 0])
                    acc[0] += ok
                    acc[1] += total
        out: dict[str, dict[str, float | None]] = {}
        for target in targets:
            out[target] = {}
            for window in WINDOWS:
                ok, total = totals.get((target, window), (0, 0))
                out[target][window] = round(ok / total, 6) if total else None
        return out

    def _read(self, now: float) -> dict[tuple[str, str], list[int]]:
        totals: dict[tuple[str, str], list[int]] = {}
        with self._lock:
            for window, seconds in WINDOWS.items():
                since = int((now - seconds) // 3600)
                for target, ok, total in self._db.execute(
                        "SELECT target, SUM(ok), SUM(total) FROM uptime WHERE hour >= ?"
                        " GROUP BY target", (since,)):
                    totals[(target, window)] = [ok, total]
        return totals

    def close(self) -> None:
        with self._lock:
            self._db.close()
