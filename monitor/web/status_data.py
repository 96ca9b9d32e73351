"""What the status page shows, as data: `GET /api/v1/status` returns it as it is, the page, the
badges and the feed render it. One place decides what a public page may show: with
`[status_page].public` no URL, address, instance name or failure detail enters the data at
all, so no renderer can leak one.

Incidents are the alerts firing now (`Alerting.view()`, the cluster's on any instance), the
maintenance windows open now, and the alerts resolved in the last RECENT (the incident log).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from alerts.alerting import WATCHDOG, Alerting
from alerts.maintenance import WindowSpec, window_span
from alerts.model import matches
from monitor.cluster import ClusterView, TargetView
from monitor.runtime import Bucket, Buckets, History, TargetState

RECENT = timedelta(days=7)  # resolved incidents shown this long
# The data is reused for REUSE times as long as building it took, at least MIN_REUSE seconds:
# a small monitor answers fresh data, a thousand targets (half a second of work) are built
# at most every few seconds however many people watch the page.
REUSE, MIN_REUSE = 10.0, 1.0
Slos = Callable[[], Sequence[Mapping[str, Any]] | Awaitable[Sequence[Mapping[str, Any]]]]
SLO_KEYS = ("name", "objective", "window", "attained", "error_budget_remaining")


class Settings(Protocol):
    """`[status_page]` as the page reads it (`monitor.config.StatusPageSection`)."""

    @property
    def title(self) -> str: ...
    @property
    def public(self) -> bool: ...
    @property
    def group_by(self) -> str: ...


@dataclass(frozen=True)
class Sources:
    """Where the incidents and SLOs come from: the alerting (None: no incidents but the
    maintenance windows), the maintenance windows configured now, and the SLO provider."""

    alerting: Callable[[], Alerting | None] = lambda: None
    windows: Callable[[], Sequence[WindowSpec]] = lambda: ()
    slos: Slos = lambda: []


def _iso(when: datetime | None) -> str | None:
    return when.isoformat() if when is not None else None


def _buckets_json(buckets: Sequence[Bucket], starts: dict[float, str]) -> list[dict[str, Any]]:
    """`starts` caches the ISO form of each start: every target has the same ones."""
    out = []
    for b in buckets:
        start = starts.get(b.start)
        if start is None:
            start = starts[b.start] = datetime.fromtimestamp(b.start, UTC).isoformat()
        out.append({"start": start, "uptime": b.uptime, "latency_ms": b.latency_ms})
    return out


def _latency(buckets: Sequence[Bucket]) -> float | None:
    timed = sum(b.timed for b in buckets)
    return round(sum(b.duration_sum for b in buckets) / timed * 1000, 3) if timed else None


class StatusBoard:
    """Builds the status data from the targets (the list the monitor keeps current), their
    history, `settings()` (read at every request, so a reload applies at once), the
    incident sources and, with `[cluster]`, the cluster's view of every target."""

    def __init__(self, states: Sequence[TargetState], history: History,
                 settings: Callable[[], Settings], sources: Sources,
                 clock: Callable[[], datetime], view: ClusterView | None = None) -> None:
        self._states = states
        self._history = history
        self.settings = settings
        self._sources = sources
        self._clock = clock
        self._view = view
        self._lock = asyncio.Lock()  # one build at a time; the others wait for its answer
        self._built: tuple[float, object, dict[str, Any]] | None = None  # (until, key, data)

    async def _views(self, states: Sequence[TargetState]) -> dict[str, TargetView]:
        return {} if self._view is None else await self._view.targets(states)

    def target(self, name: str) -> TargetState | None:
        return next((s for s in self._states if s.name == name), None)

    async def state_of(self, state: TargetState) -> str:
        """up, down or pending: the cluster's verdict with `[cluster]`."""
        views = await self._views([state])
        return _state(state, views.get(state.name))

    async def uptime_of(self, name: str) -> dict[str, float | None]:
        return (await self._history.ratios([name])).get(name, {})

    async def status(self) -> dict[str, Any]:
        """The contract's `{title, updated, groups, incidents, slos}`; reused a while (see
        REUSE) unless the settings or the targets changed (a reload)."""
        async with self._lock:
            settings = self.settings()
            key = (settings, tuple(id(s) for s in self._states))
            built = self._built
            if built is not None and built[1] == key and time.monotonic() < built[0]:
                return built[2]
            started = time.monotonic()
            data = await self._build(settings)
            took = time.monotonic() - started
            self._built = (time.monotonic() + max(MIN_REUSE, REUSE * took), key, data)
            return data

    async def _build(self, settings: Settings) -> dict[str, Any]:
        states = list(self._states)
        names = [s.name for s in states]
        now = self._clock()
        ratios = await self._history.ratios(names)
        buckets = await self._history.buckets(names)
        views = await self._views(states)
        windows = list(self._sources.windows())
        groups = await asyncio.to_thread(self._groups, settings, states, now, ratios, buckets,
                                         views, windows)
        return {
            "title": settings.title,
            "updated": now.isoformat(),
            "public": settings.public,
            "groups": [{"name": k, "targets": v} for k, v in groups.items()],
            "incidents": await self.incidents(now, windows, settings.public),
            "slos": await self._slos(),
        }

    @staticmethod
    def _groups(settings: Settings, states: Sequence[TargetState], now: datetime,
                ratios: Mapping[str, Mapping[str, float | None]],
                buckets: Mapping[str, Buckets], views: Mapping[str, TargetView],
                windows: Sequence[WindowSpec]) -> dict[str, list[dict[str, Any]]]:
        """The targets by group, on a worker thread (a thousand targets' 114 buckets)."""
        groups: dict[str, list[dict[str, Any]]] = {}
        starts: dict[float, str] = {}
        for s in states:
            key = s.config.labels.get(settings.group_by, "") if settings.group_by else ""
            b = buckets.get(s.name)
            view = views.get(s.name)
            labels = {**s.config.labels, "target": s.name, "type": s.config.type}
            item: dict[str, Any] = {
                "name": s.name,
                "type": s.config.type,
                "state": _state(s, view),
                "since": _iso(s.since),
                "maintenance": any(matches(w.match, labels) and window_span(w, now)
                                   for w in windows),
                "uptime": dict(ratios.get(s.name, {})),
                "latency_ms": _latency(b.hourly) if b else None,
                "history": _buckets_json(b.hourly, starts) if b else [],
                "daily": _buckets_json(b.daily, starts) if b else [],
            }
            if view is not None:
                item["locations"] = [
                    {"name": loc, "state": "pending" if x.stale else
                     ("up" if x.result.success else "down"),
                     **({} if settings.public else {"instance": x.instance})}
                    for loc, x in view.locations.items()]
            if not settings.public:
                last = view.last if view is not None else s.last
                item["url"] = s.config.display_url
                item["labels"] = dict(s.config.labels)
                item["failure"] = (None if last is None or last.success else
                                   {"reason": last.reason.value if last.reason else None,
                                    "detail": last.detail})
            groups.setdefault(key, []).append(item)
        return groups

    async def _slos(self) -> list[dict[str, Any]]:
        got = self._sources.slos()
        items = await got if inspect.isawaitable(got) else got
        return [{k: item.get(k) for k in SLO_KEYS} for item in items]

    async def incidents(self, now: datetime, windows: Sequence[WindowSpec],
                        public: bool) -> list[dict[str, Any]]:
        """Firing now, maintenance now, then resolved within RECENT (newest first)."""
        out: list[dict[str, Any]] = []
        for w in windows:
            span = window_span(w, now)
            if span is not None:
                out.append({"id": _digest("maintenance", w.name, span[0].isoformat()),
                            "kind": "maintenance", "status": "maintenance", "title": w.name,
                            "alertname": "", "target": "", "severity": "",
                            "started_at": span[0].isoformat(),
                            "resolved_at": span[1].isoformat()})
        alerting = self._sources.alerting()
        if alerting is None:
            return out
        log = await alerting.incidents(now - RECENT)
        open_ids = {i["fingerprint"]: i for i in log if i["resolved_at"] is None}
        firing = []
        for alert, phase, _muted in await alerting.view():
            if phase != "firing" or alert.name == WATCHDOG:
                continue
            logged = open_ids.get(alert.fingerprint)
            started = alert.starts_at.isoformat() if alert.starts_at else (
                logged["started_at"] if logged else None)
            firing.append(_incident(
                logged["id"] if logged else _digest(alert.fingerprint, started or ""),
                "firing", alert.name, alert.labels.get("target", ""),
                alert.labels.get("severity", ""), alert.annotations.get("summary", ""),
                started, None, public))
        resolved = [_incident(i["id"], "resolved", i["alertname"], i["target"], i["severity"],
                              i["summary"], i["started_at"], i["resolved_at"], public)
                    for i in log if i["resolved_at"] is not None]
        resolved.sort(key=lambda i: str(i["resolved_at"]), reverse=True)
        return firing + out + resolved


def _state(state: TargetState, view: TargetView | None) -> str:
    up = state.up if view is None else view.up
    return "pending" if up is None else "up" if up else "down"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _incident(ident: str, status: str, alertname: str, target: str, severity: str,
              summary: str, started: str | None, resolved: str | None,
              public: bool) -> dict[str, Any]:
    title = f"{alertname} on {target}" if target else alertname
    out = {"id": str(ident), "kind": "alert", "status": status, "title": title,
           "alertname": alertname, "target": target, "severity": severity,
           "started_at": started, "resolved_at": resolved}
    if not public:  # a summary carries values and details: URLs, addresses, errors
        out["summary"] = summary
    return out
