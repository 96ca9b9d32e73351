"""Uptime and latency history per target in SQLite under data_dir: hourly buckets (kept 31 days,
for the 24 h / 7 d / 30 d uptime and the status page's 24 h bars) and daily ones (kept 90 days,
for its 90 d bars), each counting successes, probes, and the probes' summed duration.

Counting happens in memory on the event loop; a flush every minute writes the counts in
one transaction on a worker thread, so a restart keeps the history.
The schema's version is `PRAGMA user_version` (VERSION). Version 1 (and 0, from before the
version, the same table) had hourly counts without durations: such a file is migrated in one
transaction (duration columns added, the daily table filled from the hours there are; their
latency stays unknown). Any other version is refused with `core.formats.FormatError`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import msgspec

from core.files import private_database
from core.formats import sqlite_version

WINDOWS = {"24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
RETENTION = 31 * 86400
HOUR, DAY = 3600, 86400
HOURS_SHOWN = 24  # hourly buckets the status page shows (the current hour last)
DAYS_SHOWN = 90  # daily buckets it shows
DAILY_RETENTION = (DAYS_SHOWN + 1) * DAY

VERSION = 2
READABLE = (0, 1, VERSION)  # 0 and 1: hourly counts only, migrated when opened
TABLES = """
CREATE TABLE IF NOT EXISTS uptime (
    target TEXT NOT NULL, hour INTEGER NOT NULL, ok INTEGER NOT NULL, total INTEGER NOT NULL,
    duration_sum REAL NOT NULL DEFAULT 0, timed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (target, hour)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS daily (
    target TEXT NOT NULL, day INTEGER NOT NULL, ok INTEGER NOT NULL, total INTEGER NOT NULL,
    duration_sum REAL NOT NULL DEFAULT 0, timed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (target, day)
) WITHOUT ROWID;
"""
_ADD = (" VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT ({}) DO UPDATE SET ok = ok + excluded.ok,"
        " total = total + excluded.total, duration_sum = duration_sum + excluded.duration_sum,"
        " timed = timed + excluded.timed")
ADD_HOUR = "INSERT INTO uptime" + _ADD.format("target, hour")
ADD_DAY = "INSERT INTO daily" + _ADD.format("target, day")
MIGRATE_1 = """
ALTER TABLE uptime ADD COLUMN duration_sum REAL NOT NULL DEFAULT 0;
ALTER TABLE uptime ADD COLUMN timed INTEGER NOT NULL DEFAULT 0;
"""


class Bucket(msgspec.Struct, frozen=True):
    """One hour or day of a target: probes that succeeded (`ok`) of `total`, and the summed
    duration (seconds) of the `timed` ones among them (0 for counts written before durations
    were kept). A msgspec Struct: a page of a thousand targets builds 114,000 of them, which
    a frozen dataclass makes several times slower."""

    start: float  # unix seconds of the bucket's first instant (UTC)
    ok: int = 0
    total: int = 0
    duration_sum: float = 0.0
    timed: int = 0

    @property
    def uptime(self) -> float | None:
        return round(self.ok / self.total, 6) if self.total else None

    @property
    def latency_ms(self) -> float | None:
        return round(self.duration_sum / self.timed * 1000, 3) if self.timed else None


@dataclass(frozen=True)
class Buckets:
    """A target's history as the status page shows it, oldest first: the last HOURS_SHOWN
    hours (the current one last) and DAYS_SHOWN days (today last); empty ones included."""

    hourly: tuple[Bucket, ...]
    daily: tuple[Bucket, ...]


Counts = list[float]  # [ok, total, duration_sum, timed]


class History(Protocol):
    """What the monitor needs of an uptime history: this one (SQLite, one instance) or the
    cluster's (`monitor.cluster.ClusterHistory`, Redis)."""

    def record(self, target: str, success: bool, at: float,
               duration: float | None = None) -> None: ...
    async def flush(self) -> None: ...
    async def ratios(self, targets: Iterable[str]) -> dict[str, dict[str, float | None]]: ...
    async def buckets(self, targets: Iterable[str]) -> dict[str, Buckets]: ...
    def close(self) -> None: ...


def record_probe(pending: dict[tuple[str, int], Counts], target: str, success: bool,
                 at: float, duration: float | None) -> None:
    """Count one probe into `pending`, by (target, hour): what both histories' `record`
    does between flushes."""
    key = (target, int(at // HOUR))
    counts = pending.get(key)
    if counts is None:
        counts = pending[key] = [0, 0, 0.0, 0]
    add_counts(counts, success, duration)


def add_counts(acc: Counts, success: bool, duration: float | None) -> None:
    """Count one probe into `acc`."""
    acc[0] += success
    acc[1] += 1
    if duration is not None:
        acc[2] += duration
        acc[3] += 1


def shown(now: float) -> tuple[list[int], list[int]]:
    """The hours and days (as numbers since 1970) the status page shows at `now`."""
    hour, day = int(now // HOUR), int(now // DAY)
    return (list(range(hour - HOURS_SHOWN + 1, hour + 1)),
            list(range(day - DAYS_SHOWN + 1, day + 1)))


def assemble(names: Iterable[str], now: float,
             hourly: Mapping[tuple[str, int], Counts],
             daily: Mapping[tuple[str, int], Counts]) -> dict[str, Buckets]:
    """Every target's Buckets from counts per (target, hour) and (target, day)."""
    hours, days = shown(now)
    empty = [0, 0, 0.0, 0]

    def bucket(start: int, c: Counts) -> Bucket:
        return Bucket(float(start), int(c[0]), int(c[1]), float(c[2]), int(c[3]))

    return {name: Buckets(tuple(bucket(h * HOUR, hourly.get((name, h), empty)) for h in hours),
                          tuple(bucket(d * DAY, daily.get((name, d), empty)) for d in days))
            for name in names}


class UptimeHistory:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        private_database(path)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()  # one thread at a time on the connection
        try:  # before anything touches the file
            found = sqlite_version(self._db, f"the uptime history {path}", READABLE)
        except BaseException:
            self._db.close()
            raise
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            if found < VERSION:
                self._migrate()
            else:
                self._db.executescript(TABLES)
        self._pending: dict[tuple[str, int], Counts] = {}

    def _migrate(self) -> None:
        """A new file, or one of version 0/1 (hourly counts, no durations), to VERSION, in one
        transaction: a crash halfway leaves the old file as it was."""
        db = self._db
        old = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'uptime'"
                         ).fetchone() is not None
        db.execute("BEGIN")
        try:
            if old:
                for statement in MIGRATE_1.strip().splitlines():
                    db.execute(statement)
            for statement in TABLES.split(";"):
                if statement.strip():
                    db.execute(statement)
            if old:  # the days there are hours of; the newest 90 of them are shown
                db.execute("INSERT INTO daily (target, day, ok, total) SELECT target,"
                           " hour / 24, SUM(ok), SUM(total) FROM uptime GROUP BY target,"
                           " hour / 24")
            db.execute(f"PRAGMA user_version = {VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def record(self, target: str, success: bool, at: float,
               duration: float | None = None) -> None:
        """One probe's outcome at `at` (unix seconds), and its duration in seconds."""
        record_probe(self._pending, target, success, at, duration)

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        if pending:
            await asyncio.to_thread(self._write, pending)

    def _write(self, pending: dict[tuple[str, int], Counts]) -> None:
        rows = [(t, h, *c) for (t, h), c in pending.items()]
        days: dict[tuple[str, int], Counts] = {}
        for (t, h), c in pending.items():
            acc = days.setdefault((t, h * HOUR // DAY), [0, 0, 0.0, 0])
            for i in range(4):
                acc[i] += c[i]
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(ADD_HOUR, rows)
                self._db.executemany(ADD_DAY, [(t, d, *c) for (t, d), c in days.items()])
                self._db.execute("DELETE FROM uptime WHERE hour < ?",
                                 (int((now - RETENTION) // HOUR),))
                self._db.execute("DELETE FROM daily WHERE day < ?",
                                 (int((now - DAILY_RETENTION) // DAY),))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    async def ratios(self, targets: Iterable[str]) -> dict[str, dict[str, float | None]]:
        """Share of successful probes per target over each window (None: no probe yet)."""
        now = self._clock()
        totals = await asyncio.to_thread(self._read, now)
        for (target, hour), (ok, total, _, _) in self._pending.items():
            for window, seconds in WINDOWS.items():
                if hour >= int((now - seconds) // HOUR):
                    acc = totals.setdefault((target, window), [0, 0])
                    acc[0] += int(ok)
                    acc[1] += int(total)
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
                since = int((now - seconds) // HOUR)
                for target, ok, total in self._db.execute(
                        "SELECT target, SUM(ok), SUM(total) FROM uptime WHERE hour >= ?"
                        " GROUP BY target", (since,)):
                    totals[(target, window)] = [ok, total]
        return totals

    async def buckets(self, targets: Iterable[str]) -> dict[str, Buckets]:
        """Each target's hourly and daily buckets as the status page shows them, the counts
        not flushed yet included."""
        names = list(targets)
        now = self._clock()
        pending = {k: list(v) for k, v in self._pending.items()}
        return await asyncio.to_thread(self._buckets, names, now, pending)

    def _buckets(self, names: list[str], now: float,
                 pending: dict[tuple[str, int], Counts]) -> dict[str, Buckets]:
        """On a worker thread: for a thousand targets the read and the assembly take a few
        hundred milliseconds, which the event loop (the scheduler) must not wait for."""
        hourly, daily = self._read_buckets(now)
        for (target, hour), c in pending.items():
            for table, key in ((hourly, (target, hour)), (daily, (target, hour * HOUR // DAY))):
                acc = table.setdefault(key, [0, 0, 0.0, 0])
                for i in range(4):
                    acc[i] += c[i]
        return assemble(names, now, hourly, daily)

    def _read_buckets(self, now: float) -> tuple[dict[tuple[str, int], Counts],
                                                 dict[tuple[str, int], Counts]]:
        hours, days = shown(now)
        with self._lock:
            hourly = {(t, h): [ok, total, dur, timed] for t, h, ok, total, dur, timed in
                      self._db.execute("SELECT target, hour, ok, total, duration_sum, timed"
                                       " FROM uptime WHERE hour >= ?", (hours[0],))}
            daily = {(t, d): [ok, total, dur, timed] for t, d, ok, total, dur, timed in
                     self._db.execute("SELECT target, day, ok, total, duration_sum, timed"
                                      " FROM daily WHERE day >= ?", (days[0],))}
        return hourly, daily

    def close(self) -> None:
        with self._lock:
            self._db.close()
