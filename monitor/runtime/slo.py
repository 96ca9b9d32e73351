"""Service level objectives evaluated from the monitor's own data (no Prometheus needed):
attainment and remaining error budget over each SLO's window, and the burn rates over the
windows of `alerts.builtin.BURN_WINDOWS`, which `SLOBurnRate` alerts on.

What is counted. Kind `probe`: every probe result of a target the SLO's `match` selects is
one event, good when it succeeded. Kind `webhook_delivery`: every delivery of the embedded
service that ended (delivered, dead, or failed because its endpoint went away) is one event,
good when it was delivered within `within` of the event's acceptance; read every evaluation
from the service's own counters (the latency histogram's bucket at `within` and the outcome
counter), so a delivery counts when it ends. Counts are kept per SLO in minute buckets for
the last `FINE_KEEP` (the burn-rate windows up to 6 h) and hour buckets for `RETENTION`
(3 d and the SLO windows, up to 30 d): `SqliteSloHistory` under data_dir, or with
`[cluster]` `monitor.cluster.RedisSloHistory`, where every instance adds its own counts.
With less history than a window, the window is computed over the history there is and
marked partial.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

import catalog.metrics as m
from alerts.builtin import BURN_WINDOWS
from alerts.model import matches
from core.clock import Clock
from core.files import private_database
from core.formats import sqlite_version
from monitor.config import SloConfig, TargetConfig, format_duration

MINUTE, HOUR = 60, 3600
FINE_KEEP = 6 * HOUR + 10 * MINUTE  # minute buckets: the burn-rate windows up to 6 h
FINE_LIMIT = 6 * HOUR  # windows up to this long are read from minute buckets
RETENTION = 31 * 86400  # hour buckets: the longest SLO window (30 d) and a margin
EVERY = 10.0  # seconds between evaluations: burn-rate alerts react within this
ENDED = ("success", "failed", "dead")  # delivery outcomes that end a delivery

Counts = tuple[int, int]  # (good, total)


@dataclass(frozen=True)
class SloCounts:
    """What a history read gives for one SLO: (good, total) per window name, and when its
    first event was counted (None: never)."""

    windows: Mapping[str, Counts]
    since: float | None


class SloHistory(Protocol):
    """Where SLO counts are kept: `SqliteSloHistory` or the cluster's Redis."""

    def record(self, slo: str, good: int, total: int, at: float) -> None: ...
    async def flush(self) -> None: ...
    async def read(self, windows: Mapping[str, Mapping[str, float]],
                   now: float) -> dict[str, SloCounts]: ...
    def close(self) -> None: ...


@dataclass
class _Buckets:
    minutes: dict[int, list[int]] = field(default_factory=dict)
    hours: dict[int, list[int]] = field(default_factory=dict)
    since: float | None = None

    def add(self, good: int, total: int, at: float) -> None:
        for buckets, key in ((self.minutes, int(at // MINUTE)), (self.hours, int(at // HOUR))):
            counts = buckets.setdefault(key, [0, 0])
            counts[0] += good
            counts[1] += total
        if self.since is None or at < self.since:
            self.since = at

    def window(self, seconds: float, now: float) -> Counts:
        """Counts of the buckets that overlap the last `seconds`."""
        if seconds <= FINE_LIMIT:
            buckets, start = self.minutes, int((now - seconds) // MINUTE)
        else:
            buckets, start = self.hours, int((now - seconds) // HOUR)
        good = total = 0
        for key, (g, t) in buckets.items():
            if key >= start:
                good += g
                total += t
        return good, total

    def prune(self, now: float) -> None:
        fine, coarse = int((now - FINE_KEEP) // MINUTE), int((now - RETENTION) // HOUR)
        for key in [k for k in self.minutes if k < fine]:
            del self.minutes[key]
        for key in [k for k in self.hours if k < coarse]:
            del self.hours[key]


VERSION = 1
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS slo_counts (
    slo TEXT NOT NULL, size INTEGER NOT NULL, bucket INTEGER NOT NULL,
    good INTEGER NOT NULL, total INTEGER NOT NULL,
    PRIMARY KEY (slo, size, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS slo_since (slo TEXT PRIMARY KEY, since REAL NOT NULL);
PRAGMA user_version = {VERSION};
"""


class SqliteSloHistory:
    """SLO counts of one instance: kept in memory (a few thousand buckets per SLO), written
    to `path` at each flush on a worker thread, read back at start."""

    def __init__(self, path: Path) -> None:
        private_database(path)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        try:
            sqlite_version(self._db, f"the SLO history {path}", (0, VERSION))
        except BaseException:
            self._db.close()
            raise
        self._slos: dict[str, _Buckets] = {}
        self._pending: dict[tuple[str, int, int], list[int]] = {}
        self._first: dict[str, float] = {}
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(SCHEMA)
            for slo, size, bucket, good, total in self._db.execute(
                    "SELECT slo, size, bucket, good, total FROM slo_counts"):
                book = self._slos.setdefault(slo, _Buckets())
                (book.minutes if size == MINUTE else book.hours)[bucket] = [good, total]
            for slo, since in self._db.execute("SELECT slo, since FROM slo_since"):
                self._slos.setdefault(slo, _Buckets()).since = since

    def record(self, slo: str, good: int, total: int, at: float) -> None:
        book = self._slos.get(slo)
        if book is None:
            book = self._slos[slo] = _Buckets()
        if book.since is None or at < book.since:
            self._first[slo] = min(at, self._first.get(slo, at))
        book.add(good, total, at)
        for size in (MINUTE, HOUR):
            counts = self._pending.setdefault((slo, size, int(at // size)), [0, 0])
            counts[0] += good
            counts[1] += total

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        first, self._first = self._first, {}
        if pending or first:
            await asyncio.to_thread(self._write, pending, first)

    def _write(self, pending: dict[tuple[str, int, int], list[int]],
               first: dict[str, float]) -> None:
        rows = [(slo, size, bucket, g, t) for (slo, size, bucket), (g, t) in pending.items()]
        newest = max((b * s for _, s, b in pending), default=0)
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT INTO slo_counts VALUES (?, ?, ?, ?, ?) ON CONFLICT (slo, size, bucket)"
                " DO UPDATE SET good = good + excluded.good, total = total + excluded.total",
                rows)
            self._db.executemany("INSERT INTO slo_since VALUES (?, ?) ON CONFLICT (slo) DO "
                                 "UPDATE SET since = min(since, excluded.since)",
                                 list(first.items()))
            if newest:
                self._db.execute("DELETE FROM slo_counts WHERE size = ? AND bucket < ?",
                                 (MINUTE, (newest - FINE_KEEP) // MINUTE))
                self._db.execute("DELETE FROM slo_counts WHERE size = ? AND bucket < ?",
                                 (HOUR, (newest - RETENTION) // HOUR))
            self._db.execute("COMMIT")

    async def read(self, windows: Mapping[str, Mapping[str, float]],
                   now: float) -> dict[str, SloCounts]:
        out: dict[str, SloCounts] = {}
        for slo, wanted in windows.items():
            book = self._slos.get(slo)
            if book is None:
                out[slo] = SloCounts({w: (0, 0) for w in wanted}, None)
                continue
            book.prune(now)
            out[slo] = SloCounts({w: book.window(s, now) for w, s in wanted.items()},
                                 book.since)
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()


@dataclass(frozen=True)
class SloStatus:
    """One SLO at one evaluation. Ratios are None while its window holds no event."""

    slo: SloConfig
    attained: float | None  # share of good events over the SLO's window
    error_budget_remaining: float | None  # 1 - burn rate over the window; may go below 0
    burn_rates: Mapping[str, float | None]  # by BURN_WINDOWS name
    partial: Mapping[str, bool]  # by window name ("window" for the SLO's): less history
    history_seconds: float  # since the first counted event

    def public(self) -> dict[str, object]:
        """What the status page shows: `{name, objective, window, attained,
        error_budget_remaining}` (objective and attained in percent)."""
        return {"name": self.slo.name, "objective": self.slo.objective,
                "window": format_duration(self.slo.window),
                "attained": None if self.attained is None else round(self.attained * 100, 4),
                "error_budget_remaining": None if self.error_budget_remaining is None
                else round(self.error_budget_remaining, 4)}


class ServiceCounters(Protocol):
    def get_sample_value(self, name: str, labels: dict[str, str] | None = None
                         ) -> float | None: ...


class SloBook:
    """The SLOs of the running monitor: counts probe results and the service's deliveries
    into `history`, evaluates every SLO (`evaluate`), and shows the last evaluation as the
    crypitor_slo_* gauges (`collector`) and to the status page (`statuses`)."""

    def __init__(self, slos: Sequence[SloConfig], history: SloHistory, clock: Clock) -> None:
        self.history = history
        self._clock = clock
        self._slos: tuple[SloConfig, ...] = ()
        self._last: list[SloStatus] = []
        self._delivered: dict[float, Counts] = {}  # within → the counters' last reading
        self.reconfigure(slos)

    @property
    def slos(self) -> tuple[SloConfig, ...]:
        return self._slos

    def reconfigure(self, slos: Sequence[SloConfig]) -> None:
        """Take a reloaded `[[slos]]`: an SLO keeps its counts by its name (a changed match
        counts from now on; what it counted before stays)."""
        self._slos = tuple(slos)
        self._probe = tuple(s for s in slos if s.kind == "probe")
        self._matching: dict[str, tuple[TargetConfig, tuple[str, ...]]] = {}
        names = {s.name for s in slos}
        self._last = [s for s in self._last if s.slo.name in names]

    def record_probe(self, target: TargetConfig, success: bool, at: float) -> None:
        """One probe result of `target` (its config: labels, type, name)."""
        if not self._probe:
            return
        cached = self._matching.get(target.name)
        if cached is not None and cached[0] is target:
            slos = cached[1]
        else:  # a new target, or its config changed at a reload
            labels = {**target.labels, "type": target.type, "target": target.name}
            slos = tuple(s.name for s in self._probe if matches(s.match, labels))
            self._matching[target.name] = (target, slos)
        for name in slos:
            self.history.record(name, int(success), 1, at)

    def sample_service(self, counters: ServiceCounters, at: float) -> None:
        """Count the deliveries that ended since the last sample (the first sample counts
        from zero: the counters start with the process)."""
        for within in {s.delivered_within for s in self._slos if s.kind == "webhook_delivery"}:
            good = counters.get_sample_value(m.WEBHOOK_LATENCY.name + "_bucket",
                                             {"le": m.bucket_label(within)}) or 0.0
            total = sum(counters.get_sample_value(m.WEBHOOK_DELIVERIES.name,
                                                  {"outcome": o}) or 0.0 for o in ENDED)
            last_good, last_total = self._delivered.get(within, (0, 0))
            if total < last_total:  # a new registry: counted from zero again
                last_good = last_total = 0
            self._delivered[within] = (int(good), int(total))
            grew_good, grew_total = int(good) - last_good, int(total) - last_total
            if grew_total > 0:
                for slo in self._slos:
                    if slo.kind == "webhook_delivery" and slo.delivered_within == within:
                        self.history.record(slo.name, grew_good, grew_total, at)

    async def evaluate(self) -> list[SloStatus]:
        now = self._clock().timestamp()
        slos = self._slos
        windows = {s.name: {**BURN_WINDOWS, "window": s.window} for s in slos}
        counts = await self.history.read(windows, now)
        self._last = [_status(s, counts[s.name], now) for s in slos]
        return list(self._last)

    def statuses(self) -> list[dict[str, object]]:
        """The last evaluation as the status page shows it: `[{name, objective, window,
        attained, error_budget_remaining}]`, in config order."""
        return [s.public() for s in self._last]

    @property
    def last(self) -> list[SloStatus]:
        return list(self._last)


def slo_collector(book: Callable[[], SloBook | None]) -> Collector:
    """The crypitor_slo_* gauges of the book `book()` gives at each scrape (None: none)."""
    def current() -> tuple[Sequence[SloConfig], Sequence[SloStatus]]:
        found = book()
        return ((), ()) if found is None else (found.slos, found.last)
    return _SloCollector(current)


def _status(slo: SloConfig, counts: SloCounts, now: float) -> SloStatus:
    budget = 1 - slo.ratio
    history = now - counts.since if counts.since is not None else 0.0

    def burn(good: int, total: int) -> float | None:
        return None if total == 0 else (1 - good / total) / budget

    good, total = counts.windows["window"]
    window_burn = burn(good, total)
    rates = {w: burn(*counts.windows[w]) for w in BURN_WINDOWS}
    partial = {w: history < s for w, s in {**BURN_WINDOWS, "window": slo.window}.items()}
    return SloStatus(slo, None if total == 0 else good / total,
                     None if window_burn is None else 1 - window_burn, rates, partial,
                     history)


class _SloCollector(Collector):
    def __init__(self, current: Callable[[], tuple[Sequence[SloConfig],
                                                   Sequence[SloStatus]]]) -> None:
        self._current = current

    def collect(self) -> Iterator[Metric]:
        slos, last = self._current()
        objective = GaugeMetricFamily(m.SLO_OBJECTIVE.name, m.SLO_OBJECTIVE.help,
                                      labels=["slo"])
        budget = GaugeMetricFamily(m.SLO_BUDGET_REMAINING.name, m.SLO_BUDGET_REMAINING.help,
                                   labels=["slo"])
        burn = GaugeMetricFamily(m.SLO_BURN_RATE.name, m.SLO_BURN_RATE.help,
                                 labels=["slo", "window"])
        for slo in slos:
            objective.add_metric([slo.name], slo.ratio)
        for status in last:
            name = status.slo.name
            if status.error_budget_remaining is not None:
                budget.add_metric([name], status.error_budget_remaining)
            for window, rate in status.burn_rates.items():
                if rate is not None:
                    burn.add_metric([name, window], rate)
        yield from (objective, budget, burn)
