"""Routing: which receiver hears an alert, when, and whether at all.

The route tree (`alerts.route_tree`) picks a receiver and timing per alert; alerts are grouped
per route and `group_by` values, and each group runs Alertmanager's timers (group_wait,
group_interval, repeat_interval). Silences, maintenance windows and inhibition
(`alerts.inhibition`) mute alerts. Pure logic: the clock is passed in and the caller persists
`snapshot()` and feeds it back to `restore()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alerts import AlertError
from alerts.inhibition import BUILTIN_INHIBIT, Inhibitor, InhibitRule, InhibitSpec
from alerts.maintenance import WindowSpec, in_window
from alerts.model import Alert, Notification
from alerts.route_tree import Route, RouteSpec, matcher_text
from alerts.silences import Silences

# Route/RouteSpec moved to alerts.route_tree and the inhibit names to alerts.inhibition;
# re-exported so `from alerts.routing import ...` still works
__all__ = ["BUILTIN_INHIBIT", "InhibitRule", "InhibitSpec", "Route", "RouteSpec", "Router"]


# --- groups and their timers ---------------------------------------------------------------


@dataclass
class _Group:
    key: str
    route: Route
    labels: dict[str, str]
    first_seen: datetime
    next_flush: datetime
    last_notified: datetime | None = None
    notified: set[str] = field(default_factory=set)  # firing fingerprints last sent
    firing: dict[str, Alert] = field(default_factory=dict)
    resolved: dict[str, Alert] = field(default_factory=dict)  # since the last flush


def _group_key(route: Route, labels: Mapping[str, str]) -> str:
    return f"{route.id}:{matcher_text(labels)}"


def _order(alerts: Iterable[Alert]) -> tuple[Alert, ...]:
    return tuple(sorted(alerts, key=lambda a: sorted(a.labels.items())))


class Router:
    """Groups alerts per route, decides what to notify when, and mutes what must not be.

    `update()` feeds alert states in; `due()` at the times `next_due()` names returns the
    notifications to send. A group's first flush is `group_wait` after its first alert;
    after that it flushes every `group_interval`, until a flush finds nothing firing and
    nothing to report, which removes it. A flush notifies when an unmuted alert
    fires that was not in the last notification, when a notified alert resolved, or, with
    nothing changed, when `repeat_interval` has passed since the last notification. A muted
    alert is dropped from the notified set at a flush, so it is notified again once its mute
    ends while it still fires; its resolution is never sent.

    Inhibition looks at every firing source alert, silenced or in maintenance or not:
    silencing TargetDown means "I know", not "tell me about its consequences instead".
    """

    def __init__(self, route: RouteSpec, inhibit: Sequence[InhibitSpec] = (),
                 windows: Sequence[WindowSpec] = ()) -> None:
        self.root = Route.build(route)
        self._inhibit = BUILTIN_INHIBIT + tuple(
            InhibitRule(dict(i.source_match), dict(i.target_match), tuple(i.equal))
            for i in inhibit)
        self._windows = tuple(windows)
        self._groups: dict[str, _Group] = {}

    def update(self, alerts: Iterable[Alert], now: datetime) -> None:
        """Merges alert states in; an alert not mentioned keeps its state.

        A firing alert joins (or stays in) its group, creating the group if needed. A
        resolved alert is reported at the group's next flush if its firing was notified;
        a resolved alert the router never saw firing is ignored. Absence is not resolution:
        the caller sends resolved alerts explicitly (passing the full set is harmless).
        """
        for alert in alerts:
            for route in self.root.find_all(alert.labels):  # several with `continue`
                self._update_one(route, alert, now)

    def _update_one(self, route: Route, alert: Alert, now: datetime) -> None:
        labels = route.group_labels(alert.labels)
        key = _group_key(route, labels)
        fp, group = alert.fingerprint, self._groups.get(key)
        if alert.status == "resolved":
            if group is not None and (fp in group.firing or fp in group.resolved):
                group.firing.pop(fp, None)
                group.resolved[fp] = alert
            return
        if group is None:
            group = self._groups[key] = _Group(
                key, route, labels, first_seen=now,
                next_flush=now + timedelta(seconds=route.group_wait))
        group.resolved.pop(fp, None)
        group.firing[fp] = alert

    def firing(self) -> list[Alert]:
        """Every alert firing now, muted or not (once, though `continue` put it in several
        groups)."""
        unique = {fp: a for g in self._groups.values() for fp, a in g.firing.items()}
        return list(_order(unique.values()))

    def muted(self, alert: Alert, now: datetime, silences: Silences) -> str | None:
        """Why `alert` is muted at `now`, or None when it is not."""
        return self._mute_reason(alert, now, silences, self._inhibitor())

    def _inhibitor(self) -> Inhibitor:
        return Inhibitor(self._inhibit, (a for g in self._groups.values()
                                          for a in g.firing.values()))

    def _mute_reason(self, alert: Alert, now: datetime, silences: Silences,
                     inhibitor: Inhibitor) -> str | None:
        if (silence := silences.match(alert.labels, now)) is not None:
            return f"silenced by {silence.id}"
        for w in self._windows:
            if in_window(w, alert.labels, now):
                return f"maintenance {w.name}"
        if (source := inhibitor.source(alert)) is not None:
            return f"inhibited by {source.name}"
        return None

    def due(self, now: datetime, silences: Silences) -> list[Notification]:
        """Flushes every group whose time has come; returns what to send, by group key."""
        inhibitor = self._inhibitor()
        out: list[Notification] = []
        for key in sorted(self._groups):
            group = self._groups[key]
            if group.next_flush > now:
                continue
            note = self._flush(group, now, silences, inhibitor)
            if note is not None:
                out.append(note)
            if not group.firing and note is None:
                # kept one interval after its last message, a flapping alert re-firing
                # joins it and waits for the next tick instead of a fresh group_wait
                del self._groups[key]
            else:
                interval = max(group.route.group_interval, 1.0)
                missed = (now - group.next_flush).total_seconds() // interval
                group.next_flush += timedelta(seconds=interval * (missed + 1))
        return out

    def _flush(self, group: _Group, now: datetime, silences: Silences,
               inhibitor: Inhibitor) -> Notification | None:
        def shown(a: Alert) -> bool:
            return self._mute_reason(a, now, silences, inhibitor) is None

        visible = {fp: a for fp, a in group.firing.items() if shown(a)}
        resolved = [a for fp, a in group.resolved.items() if fp in group.notified and shown(a)]
        group.resolved.clear()
        repeat = (visible and group.last_notified is not None and now - group.last_notified
                  >= timedelta(seconds=group.route.repeat_interval))
        send = bool(visible.keys() - group.notified) or bool(resolved) or bool(repeat)
        group.notified = set(visible)
        if not send:
            return None
        group.last_notified = now
        return Notification(receiver=group.route.receiver, group_key=group.key,
                            group_labels=dict(group.labels), firing=_order(visible.values()),
                            resolved=_order(resolved))

    def next_due(self, now: datetime) -> datetime | None:
        """When to call `due()` next (`now` when overdue), or None with no groups at all.

        Every group is looked at on each of its ticks, even with nothing new: a mute may
        end (a silence expiring, a window closing) without any `update()`.
        """
        if not self._groups:
            return None
        return max(now, min(g.next_flush for g in self._groups.values()))

    # --- persistence ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """JSON-able group state: alerts, what was last notified and when, the timers."""
        return {"version": 1, "groups": [
            {"key": g.key, "first_seen": g.first_seen.isoformat(),
             "next_flush": g.next_flush.isoformat(),
             "last_notified": g.last_notified.isoformat() if g.last_notified else None,
             "notified": sorted(g.notified),
             "firing": [_alert_to_json(a) for a in _order(g.firing.values())],
             "resolved": [_alert_to_json(a) for a in _order(g.resolved.values())]}
            for g in sorted(self._groups.values(), key=lambda g: g.key)]}

    def restore(self, data: Mapping[str, Any]) -> None:
        """Replaces the group state with a `snapshot()`, so a restart neither re-notifies
        nor restarts repeat_interval. Alerts are routed again under the current config;
        groups that now coincide are merged (earliest timers, latest notification)."""
        if data.get("version") != 1:
            raise AlertError(f"router snapshot version {data.get('version')!r} is unknown")
        self._groups = {}
        try:
            for item in data["groups"]:
                first_seen = datetime.fromisoformat(item["first_seen"])
                next_flush = datetime.fromisoformat(item["next_flush"])
                last = item["last_notified"]
                last_notified = datetime.fromisoformat(last) if last else None
                notified = set(item["notified"])
                alerts = [_alert_from_json(a) for a in item["firing"] + item["resolved"]]
                for alert in alerts:
                    self._restore_alert(alert, first_seen, next_flush, last_notified,
                                        notified)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise AlertError(f"router snapshot does not parse: {exc!r}") from exc

    def _restore_alert(self, alert: Alert, first_seen: datetime, next_flush: datetime,
                       last_notified: datetime | None, notified: set[str]) -> None:
        for route in self.root.find_all(alert.labels):
            self._restore_in(route, alert, first_seen, next_flush, last_notified, notified)

    def _restore_in(self, route: Route, alert: Alert, first_seen: datetime,
                    next_flush: datetime, last_notified: datetime | None,
                    notified: set[str]) -> None:
        labels = route.group_labels(alert.labels)
        key = _group_key(route, labels)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(key, route, labels, first_seen, next_flush,
                                               last_notified)
        else:
            group.first_seen = min(group.first_seen, first_seen)
            group.next_flush = min(group.next_flush, next_flush)
            if last_notified and (not group.last_notified or group.last_notified
                                  < last_notified):
                group.last_notified = last_notified
        fp = alert.fingerprint
        (group.firing if alert.status == "firing" else group.resolved)[fp] = alert
        if fp in notified:
            group.notified.add(fp)


def _alert_to_json(a: Alert) -> dict[str, Any]:
    return {"labels": dict(a.labels), "annotations": dict(a.annotations), "status": a.status,
            "starts_at": a.starts_at.isoformat() if a.starts_at else None,
            "ends_at": a.ends_at.isoformat() if a.ends_at else None, "source": a.source}


def _alert_from_json(d: Mapping[str, Any]) -> Alert:
    if d["status"] not in ("firing", "resolved") or d["source"] not in ("native",
                                                                         "alertmanager"):
        raise ValueError(f"bad alert status or source: {d['status']!r}, {d['source']!r}")
    return Alert(labels=dict(d["labels"]), annotations=dict(d["annotations"]),
                 status=d["status"], source=d["source"],
                 starts_at=datetime.fromisoformat(d["starts_at"]) if d["starts_at"] else None,
                 ends_at=datetime.fromisoformat(d["ends_at"]) if d["ends_at"] else None)
