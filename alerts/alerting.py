"""The alerting loop: probe results in, Telegram messages out, nothing lost on the way.

    observe() ──▶ Evaluator (state machine) ──▶ Router (groups, silences, windows,
    inhibition) ──▶ outbox (SQLite, written with the router state) ──▶ one sender per receiver

`observe` is synchronous and cheap (called for every probe result); a flush task persists
changed states, asks the router what is due and writes it to the outbox; each receiver's
sender sends its outbox in order, waiting out 429s and backing off on network errors.
Alerts from Alertmanager join the same router through `receive_external`. Both loops run
under a supervisor (`spawn`): a bug or a full disk crashes the loop, which is logged,
counted and restarted with backoff; the flush loop is essential to readiness.

With a shared store (`[cluster]`) only the leader runs (`start`/`stop` follow the lease):
each flush re-reads silences and takes in Alertmanager alerts queued by any instance, and
publishes what is pending and firing (`view()` on the others). A fenced write refused
(`NotLeader`) ends the flush loop and calls `on_not_leader`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from alerts import NotifyError, NotLeader
from alerts.builtin import RuleSpec
from alerts.evaluate import Evaluator, Transition
from alerts.model import Alert, AlertStatus, Notification
from alerts.routing import Router
from alerts.silences import Silence, Silences
from alerts.store import EXTERNAL_DOC, Outgoing, Queued, Store
from core.clock import Clock, utc_now
from core.supervisor import Spawn, Supervisor

log = logging.getLogger(__name__)
ROUTER_DOC, SNAPSHOT_DOC = "router", "snapshot"
MARK_TRIES = 60  # a "sent" mark Redis refused is tried again, every MARK_WAIT, this often
MARK_WAIT = 0.5
WATCHDOG = "Watchdog"
MAX_BACKOFF = 300.0
FLUSH_EVERY = 1.0  # seconds between looks at the router when nothing woke the loop
# A stop lets a message already on its way to Telegram finish and be marked sent: cut off
# after Telegram took it, it would be sent again after the restart.
SEND_GRACE = 15.0


class Receiver(Protocol):
    @property
    def name(self) -> str: ...

    def render(self, note: Notification) -> tuple[str, tuple[tuple[str, str], ...]]:
        """The message text and its buttons (label, callback data)."""

    async def send(self, item: Queued) -> tuple[str, int]:
        """Deliver one outbox item (its text and buttons; its id and reply_to for those
        that use them); returns (chat id, message id); raises NotifyError."""


class Counters(Protocol):
    def notified(self, receiver: str, outcome: str) -> None: ...

    def firing(self, counts: Mapping[tuple[str, str], int]) -> None:
        """(alertname, severity) → alerts firing now."""


def _brief(alert: Alert) -> dict[str, str]:
    return {"alertname": alert.name, "target": alert.labels.get("target", ""),
            "status": alert.status, "fingerprint": alert.fingerprint}


class Alerting:
    def __init__(self, evaluator: Evaluator, router: Router, store: Store,
                 receivers: Mapping[str, Receiver], counters: Counters | None = None,
                 clock: Clock = utc_now, spawn: Spawn | None = None,
                 on_not_leader: Callable[[], None] | None = None,
                 watchdog: bool = False) -> None:
        """`watchdog`: the always-firing `Watchdog` alert (`[alerts].watchdog`), routed like
        any other so that its repeat_interval is a heartbeat a dead man's switch hears."""
        self.evaluator, self.router, self.store = evaluator, router, store
        self._watchdog = watchdog
        self.on_not_leader = on_not_leader
        self._spawn = spawn or Supervisor().supervise
        self.receivers = dict(receivers)
        self._counters, self._clock = counters, clock
        self.silences = Silences()
        self._external: dict[str, Alert] = {}  # fingerprint: alert from Alertmanager
        self._resolved: list[Alert] = []  # resolved since the last flush
        self._incidents: list[dict[str, str]] = []  # transitions for the incident log
        self._wake = asyncio.Event()
        self._send_wake = {name: asyncio.Event() for name in self.receivers}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._published: str | None = None

    # --- life cycle ------------------------------------------------------------------------
    @property
    def watchdog(self) -> bool:
        return self._watchdog

    @watchdog.setter
    def watchdog(self, on: bool) -> None:
        """Turned off (a reload), its end is sent like any alert's."""
        if self._watchdog and not on:
            self._resolved.append(replace(watchdog_alert(), status="resolved",
                                          ends_at=self._clock()))
        self._watchdog = on
        self._wake.set()

    def _builtin(self) -> list[Alert]:
        return [watchdog_alert()] if self._watchdog else []

    @property
    def leading(self) -> bool:
        """Started and not stopped: this instance evaluates, routes and sends."""
        return bool(self._tasks) and not self._stopping

    async def start(self) -> None:
        """Restore alert states, silences, router groups and external alerts; start the
        loops. A router alert whose state no longer fires (it resolved, or its rule went,
        between the last states written and the last router state) is resolved now."""
        self._stopping, self._resolved, self._external = False, [], {}
        self.evaluator.restore(await asyncio.to_thread(self.store.load_states))
        await self._read_silences()
        groups = await asyncio.to_thread(self.store.get, ROUTER_DOC)
        if groups is not None:
            self.router.restore(groups)
        for item in await asyncio.to_thread(self.store.get, EXTERNAL_DOC) or []:
            alert = _external_from_json(item)
            self._external[alert.fingerprint] = alert
        firing = {a.fingerprint for a in self.evaluator.firing() + self._builtin()}
        self._resolved = [replace(a, status="resolved", ends_at=self._clock())
                          for a in self.router.firing()
                          if a.source == "native" and a.fingerprint not in firing]
        self._tasks = [self._spawn("alert-flush", self._flush_loop, essential=True)]
        self._tasks += [self._start_sender(r) for r in self.receivers.values()]

    def _start_sender(self, receiver: Receiver) -> asyncio.Task[None]:
        self._send_wake[receiver.name] = asyncio.Event()
        return self._spawn(f"alert-send-{receiver.name}",
                           functools.partial(self._send_loop, receiver))

    async def reconfigure(self, rules: Sequence[RuleSpec],
                          targets: Mapping[str, Mapping[str, str]], router: Router,
                          receivers: Mapping[str, Receiver]) -> None:
        """A config reload: new rules, targets, route tree (with its inhibit rules and
        maintenance windows) and receivers, in place. Alert states of rules that remain are
        kept (`Evaluator.reconfigure`); the router's groups move over to the new tree as after
        a restart; a receiver given as the very object already running keeps its sender,
        any other sender is cancelled and the new one started. The outbox keeps what a
        cancelled sender had not sent; a message it was sending at that moment may go out
        once more through its successor."""
        now = self._clock()
        self._resolved += self.evaluator.reconfigure(rules, targets, now)
        router.restore(self.router.snapshot())
        self.router = router
        running = dict(zip(self.receivers, self._tasks[1:], strict=False))
        gone = [running.pop(name) for name, r in self.receivers.items()
                if receivers.get(name) is not r and name in running]
        for name in list(self._send_wake):
            if receivers.get(name) is not self.receivers.get(name):
                del self._send_wake[name]
        self.receivers = dict(receivers)
        if self._tasks:  # started: one sender per receiver, in the receivers' order
            self._tasks = self._tasks[:1] + [running[name] if name in running
                                             else self._start_sender(r)
                                             for name, r in self.receivers.items()]
        self._wake.set()
        for task in gone:  # only now: nothing above may wait, so nothing sees half of it
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def stopping(self) -> bool:
        return self._stopping

    async def stop(self) -> None:
        """Stop flushing at once; let each sender finish the message it is sending (up to
        SEND_GRACE), then stop it before the next one."""
        self._stopping = True
        for wake in self._send_wake.values():
            wake.set()
        flush, senders = self._tasks[:1], self._tasks[1:]
        for task in flush:
            task.cancel()
        if senders:
            await asyncio.wait(senders, timeout=SEND_GRACE)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):  # what the flush had not written yet
            await asyncio.to_thread(self.store.save_states, self.evaluator.take_dirty())
            await self._log_incidents()

    async def _log_incidents(self) -> None:
        """Write the transitions since the last flush to the incident log; kept for the next
        flush when the store fails."""
        events, self._incidents = self._incidents, []
        if not events:
            return
        try:
            await asyncio.to_thread(self.store.log_incidents, events)
        except BaseException:
            self._incidents[:0] = events
            raise

    async def incidents(self, since: datetime) -> list[dict[str, Any]]:
        """The incident log: alerts firing now, and those resolved at or after `since`
        (see `Store.incidents`)."""
        return await asyncio.to_thread(self.store.incidents, since)

    # --- inputs ----------------------------------------------------------------------------
    def observe(self, target: str, labels: Mapping[str, str], values: Mapping[str, Any],
                detail: str = "", location: str = "") -> None:
        """One probe result; `location` names where it was probed from (`[cluster]`)."""
        self._apply(self.evaluator.observe(target, labels, values, self._clock(), detail,
                                           location))

    def _apply(self, transitions: Sequence[Transition]) -> None:
        for t in transitions:
            if t.change == "firing":
                log.warning("alert %s FIRING for %s: %s", t.key[0], t.key[1],
                            t.alert.annotations.get("value", ""),
                            extra={"alertname": t.key[0], "target": t.key[1],
                                   "alert_severity": t.alert.labels.get("severity", "")})
                self._wake.set()
            elif t.change == "resolved":
                log.info("alert %s resolved for %s", t.key[0], t.key[1],
                         extra={"alertname": t.key[0], "target": t.key[1]})
                self._resolved.append(t.alert)
                self._wake.set()
            if t.change in ("firing", "resolved"):  # the status page's incident log
                self._incidents.append(incident_event(t.alert, t.change, self._clock()))

    async def receive_external(self, alerts: Sequence[Alert]) -> None:
        """Alerts from Alertmanager: firing ones are kept until resolved or past ends_at.
        Written down before this returns, so an acknowledged alert survives a crash."""
        if not self.leading:  # another instance leads (or none yet): queued for it
            await asyncio.to_thread(self.store.queue_external,
                                    [_external_to_json(a) for a in alerts])
            return
        self._take_external(alerts)
        await asyncio.to_thread(self.store.put, EXTERNAL_DOC,
                                [_external_to_json(a) for a in self._external.values()])
        self._wake.set()

    def _take_external(self, alerts: Sequence[Alert]) -> None:
        """Alertmanager's alerts taken in; a new firing one and the end of a known one go to
        the incident log as our own transitions do (repeats of a firing alert change nothing,
        the end of one never seen firing is ignored as for the receivers)."""
        now = self._clock()
        for alert in alerts:
            if alert.status == "resolved":
                if self._external.pop(alert.fingerprint, None) is not None:
                    self._resolved.append(alert)
                    self._incidents.append(incident_event(alert, "resolved", now))
            else:
                if alert.fingerprint not in self._external:
                    self._incidents.append(incident_event(alert, "firing", now))
                self._external[alert.fingerprint] = alert

    async def add_silence(self, silence: Silence) -> None:
        self.silences.add(silence)
        await asyncio.to_thread(self.store.put_silence, silence.to_dict())
        self._wake.set()

    async def expire_silence(self, silence_id: str) -> Silence | None:
        await self._read_silences()  # it may have been made on another instance
        expired = self.silences.expire(silence_id, self._clock())
        if expired is not None:
            await asyncio.to_thread(self.store.put_silence, expired.to_dict())
            self._wake.set()
        return expired

    async def refresh_silences(self) -> None:
        """Reads the silences again: those made on any instance."""
        await self._read_silences()

    async def _read_silences(self) -> None:
        """The silences as stored: those made on any instance."""
        items = await asyncio.to_thread(self.store.silences, self._clock())
        self.silences = Silences(Silence.from_dict(item) for item in items)

    async def acknowledge(self, fingerprint: str, who: str) -> None:
        await asyncio.to_thread(self.store.ack, fingerprint, who, self._clock())

    # --- views -----------------------------------------------------------------------------
    def current(self) -> list[tuple[Alert, str, str | None]]:
        """(alert, pending|firing, why muted or None): native ones, then Alertmanager's."""
        now = self._clock()
        out = [(a, phase, self.router.muted(a, now, self.silences))
               for a, phase in [*self.evaluator.current(),
                                *((a, "firing") for a in self._builtin())]]
        out += [(a, "firing", self.router.muted(a, now, self.silences))
                for a in self._live_external(now)]
        return out

    async def view(self) -> list[tuple[Alert, str, str | None]]:
        """`current()` on the leader; on any other instance, what the leader last published
        (silences made since are applied here too)."""
        if self.leading:
            return self.current()
        await self._read_silences()
        now = self._clock()
        out: list[tuple[Alert, str, str | None]] = []
        for item in await asyncio.to_thread(self.store.get, SNAPSHOT_DOC) or []:
            alert = _external_from_json(item)
            alert = replace(alert, source="native" if item.get("source") == "native"
                            else "alertmanager")
            silence = self.silences.match(alert.labels, now)
            muted = f"silenced by {silence.id}" if silence is not None else item.get("muted")
            out.append((alert, str(item.get("phase", "firing")), muted))
        return out

    def _live_external(self, now: datetime) -> list[Alert]:
        expired = [fp for fp, a in self._external.items() if a.ends_at and a.ends_at <= now]
        for fp in expired:
            gone = replace(self._external.pop(fp), status="resolved")
            self._resolved.append(gone)
            self._incidents.append(incident_event(gone, "resolved", now))
        return list(self._external.values())

    # --- the flush loop --------------------------------------------------------------------
    async def _flush_loop(self) -> None:
        while True:  # a failure (a full disk, a bug) is the supervisor's: logged, restarted
            try:
                delay = await self.flush()
            except NotLeader as exc:
                log.warning("alerting: %s; standing by", exc)
                if self.on_not_leader is not None:
                    self.on_not_leader()
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def flush(self) -> float:
        """Persist state changes, route, and write due notifications to the outbox; returns
        seconds until the router next needs a look."""
        now = self._clock()
        self._apply(self.evaluator.recheck(now))
        dirty = self.evaluator.take_dirty()
        if dirty:
            await asyncio.to_thread(self.store.save_states, dirty)
        await self._read_silences()
        queued = await asyncio.to_thread(self.store.queued_external)
        if queued:
            self._take_external([_external_from_json(i) for i in queued])
            await asyncio.to_thread(self.store.consume_external, len(queued),
                                    [_external_to_json(a) for a in self._external.values()])
        alerts = (self.evaluator.firing() + self._builtin() + self._live_external(now)
                  + self._resolved)
        await self._log_incidents()  # ours, and Alertmanager's taken in or expired above
        self._resolved = []
        self.router.update(alerts, now)
        if self._counters is not None:
            counts: dict[tuple[str, str], int] = {}
            for a in alerts:
                if a.status == "firing":
                    key = (a.name, a.labels.get("severity", ""))
                    counts[key] = counts.get(key, 0) + 1
            self._counters.firing(counts)
        notes = self.router.due(now, self.silences)
        if notes:
            outgoing = [self._outgoing(n) for n in notes if n.receiver in self.receivers]
            for n in notes:
                if self.receivers and n.receiver not in self.receivers:
                    log.error("no receiver named %r: notification for %s dropped",
                              n.receiver, n.group_key)
            documents = {ROUTER_DOC: self.router.snapshot(),
                         EXTERNAL_DOC: [_external_to_json(a) for a in self._external.values()]}
            await asyncio.to_thread(self.store.enqueue, outgoing, now, documents)
            for item in outgoing:
                self._send_wake[item.receiver].set()
        await self._publish()
        due = self.router.next_due(now)
        return FLUSH_EVERY if due is None else max(0.05, min(FLUSH_EVERY,
                                                             (due - now).total_seconds()))

    async def _publish(self) -> None:
        """What is pending and firing, for the other instances' API (written on change)."""
        view = [{**_external_to_json(a), "source": a.source, "phase": phase, "muted": muted}
                for a, phase, muted in self.current()]
        text = json.dumps(view, sort_keys=True)
        if text != self._published:
            await asyncio.to_thread(self.store.put, SNAPSHOT_DOC, view)
            self._published = text

    def _outgoing(self, note: Notification) -> Outgoing:
        text, buttons = self.receivers[note.receiver].render(note)
        kind = "firing" if note.firing else "resolved"
        return Outgoing(note.receiver, kind, note.group_key,
                        [_brief(a) for a in (*note.firing, *note.resolved)], text, buttons)

    # --- senders ---------------------------------------------------------------------------
    async def _send_loop(self, receiver: Receiver) -> None:
        wake = self._send_wake[receiver.name]
        while not self.stopping():  # NotifyError is handled inside; anything else crashes
            wait = await self.send_next(receiver)
            if wait is None:
                continue
            wake.clear()
            if self.stopping():  # stop() came while sending: its wake-up was just cleared
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)

    async def send_next(self, receiver: Receiver) -> float | None:
        """Send the receiver's oldest unsent notification if it is due. Returns seconds to
        wait before looking again, or None to look again at once."""
        head = await asyncio.to_thread(self.store.next_pending, receiver.name)
        if head is None:
            return 30.0
        item, due = head
        now = self._clock()
        if due > now:
            return (due - now).total_seconds()
        try:
            chat_id, message_id = await receiver.send(item)
        except NotifyError as exc:
            if exc.retry_after is None:
                log.error("notification %d to %s failed for good: %s", item.id,
                          receiver.name, exc)
                await asyncio.to_thread(self.store.mark_failed, item.id, str(exc))
                self._count(receiver.name, "failed")
                return None
            delay = max(exc.retry_after, min(MAX_BACKOFF, 2.0 ** item.attempts))
            log.warning("notification %d to %s not sent (%s); next try in %.0f s", item.id,
                        receiver.name, exc, delay)
            await asyncio.to_thread(self.store.mark_retry, item.id, str(exc),
                                    now + timedelta(seconds=delay))
            self._count(receiver.name, "retry")
            return delay
        await self._mark_sent(item.id, chat_id, message_id)
        self._count(receiver.name, "sent")
        return None

    async def _mark_sent(self, item_id: int, chat_id: str, message_id: int) -> None:
        """Telegram took it: the mark must be written before anything else is sent, or the
        message goes out again; a store that does not answer is asked again a while."""
        for attempt in range(MARK_TRIES):
            try:
                await asyncio.to_thread(self.store.mark_sent, item_id, chat_id, message_id,
                                        self._clock())
                return
            except Exception as exc:  # the store's I/O error, whichever store it is
                if attempt == MARK_TRIES - 1:
                    raise
                log.warning("notification %d sent but not marked yet (%s); trying again",
                            item_id, exc)
                await asyncio.sleep(MARK_WAIT)

    def _count(self, receiver: str, outcome: str) -> None:
        if self._counters is not None:
            self._counters.notified(receiver, outcome)


def _external_to_json(alert: Alert) -> dict[str, Any]:
    return {"labels": dict(alert.labels), "annotations": dict(alert.annotations),
            "status": alert.status,
            "starts_at": alert.starts_at.isoformat() if alert.starts_at else None,
            "ends_at": alert.ends_at.isoformat() if alert.ends_at else None}


def _external_from_json(data: Mapping[str, Any]) -> Alert:
    def when(key: str) -> datetime | None:
        return datetime.fromisoformat(data[key]) if data.get(key) else None

    status: AlertStatus = "resolved" if data.get("status") == "resolved" else "firing"
    return Alert(dict(data.get("labels", {})), dict(data.get("annotations", {})), status,
                 when("starts_at"), when("ends_at"), "alertmanager")


def incident_event(alert: Alert, change: str, now: datetime) -> dict[str, str]:
    """A transition as the incident log takes it (`Store.log_incidents`). Times are in UTC
    and no later than `now`: an Alertmanager alert's come from its sender, in any zone, and
    the log orders and expires by them (an `endsAt` in 9999 would expire everything)."""
    def when(moment: datetime) -> str:
        return min(moment, now).astimezone(UTC).isoformat()

    return {"fingerprint": alert.fingerprint, "alertname": alert.name,
            "target": alert.labels.get("target", ""),
            "severity": alert.labels.get("severity", ""),
            "summary": alert.annotations.get("summary", ""), "status": change,
            "started_at": when(alert.starts_at) if alert.starts_at else "",
            "at": when(alert.ends_at if change == "resolved" and alert.ends_at else now)}


def watchdog_alert() -> Alert:
    """The Watchdog alert: always firing while alerting runs; no target."""
    return Alert({"alertname": WATCHDOG, "severity": "none"},
                 {"summary": "Watchdog: alerting is running. This alert always fires; a dead "
                             "man's switch raises the alarm when it stops arriving."})
