"""Alerting wired into the monitor: rules, router, store and receivers (Telegram, webhook)
built from `[alerts]`, probe results fed in, the embedded webhook service watched as a target
of type `service` (and each chain it follows as one of type `follower`), and the on-call bots
started. `crypitor run` uses `MonitorAlerting`. With `[cluster]` (`ClusterPlace`) the store is
the cluster's Redis, results come from the results stream (not from this instance's probes),
and the alerting, the bots and the service watch run only while this instance leads
(`monitor.cluster.leader`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

import catalog.metrics as m
from alerts import NotifyError
from alerts.alerting import Alerting
from alerts.bot import Down, OnCallBot
from alerts.builtin import BURN_RATES, RuleSpec, all_rules, with_links
from alerts.evaluate import Evaluator
from alerts.quorum import QuorumEvaluator
from alerts.routing import Router
from alerts.store import AlertStore, Store
from alerts.telegram import OnMigrate, TelegramSender
from alerts.telegram_receiver import TelegramReceiver
from alerts.webhook_receiver import WebhookReceiver
from core.clock import Clock, utc_now
from core.leases import new_holder
from core.supervisor import Spawn, Supervisor
from monitor.cluster import PREFIX, AlertingLeader, RedisAlertStore
from monitor.config import (
    AlertsSection,
    GrafanaSection,
    ReceiverConfig,
    SecretError,
    SloConfig,
    resolve,
)
from monitor.runtime import SloStatus, TargetState

log = logging.getLogger(__name__)
SERVICE_TARGET = "webhook-service"
SERVICE_EVERY = 30.0  # seconds between looks at the embedded service
DEEP_REORG_WINDOW = timedelta(hours=1)  # FollowerDeepReorg holds this long after one
DELIVERY_WINDOW = timedelta(minutes=5)  # delivery_failure_ratio is over attempts this recent
OUTCOMES = ("success", "retry", "failed", "dead")  # crypitor_webhook_deliveries_total's
CHAT_DOC = "telegram-chat:"
AnyReceiver = TelegramReceiver | WebhookReceiver


class BadSecret(SecretError):
    """An env: secret that is set but unusable (the message says why, never quoting it);
    a SecretError, so start-up and reloads refuse it as they refuse an unset one."""

    def __init__(self, path: str, var: str, why: str) -> None:
        Exception.__init__(self, f"{path}: environment variable {var}: {why}")
        self.path, self.var = path, var


class QueueStats(Protocol):
    @property
    def depth(self) -> int: ...
    @property
    def oldest_pending_age(self) -> float: ...


class ServiceQueue(Protocol):
    async def stats(self, now: datetime) -> QueueStats: ...


class ServiceRegistry(Protocol):
    @property
    def registry(self) -> CollectorRegistry: ...


class WatchedService(Protocol):
    """What alerting reads of the embedded service (`service.app.Service`): its queue's
    statistics and the delivery counters in its registry."""

    @property
    def store(self) -> ServiceQueue: ...
    @property
    def metrics(self) -> ServiceRegistry: ...


class _Counters:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._sent = Counter(m.NOTIFICATIONS.name, m.NOTIFICATIONS.help,
                             m.NOTIFICATIONS.labels, registry=registry)
        self._firing = Gauge(m.ALERTS_FIRING.name, m.ALERTS_FIRING.help,
                             m.ALERTS_FIRING.labels, registry=registry)
        self._shown: set[tuple[str, str]] = set()

    def notified(self, receiver: str, outcome: str) -> None:
        self._sent.labels(receiver, outcome).inc()

    def firing(self, counts: Mapping[tuple[str, str], int]) -> None:
        for key in self._shown - counts.keys():
            self._firing.labels(*key).set(0)
        for key, n in counts.items():
            self._firing.labels(*key).set(n)
        self._shown |= counts.keys()


def follower_target(chain: str) -> str:
    """The synthetic target that stands for the follower of `chain` in alerting."""
    return f"follower-{chain}"


def slo_target(slo: str, window: str) -> str:
    """The synthetic target of one SLO's burn-rate pair (named by its long window)."""
    return f"slo-{slo}-{window}"


def slo_targets(slos: Sequence[SloConfig]) -> dict[str, Mapping[str, str]]:
    """Every SLO's synthetic targets with their labels (`alerts.builtin`: SLOBurnRate)."""
    return {slo_target(s.name, b.long): {"type": "slo", "slo": s.name, "window": b.long,
                                          "severity": b.severity}
            for s in slos for b in BURN_RATES}


def slo_values(status: SloStatus) -> dict[str, dict[str, Any]]:
    """The values each of the SLO's synthetic targets shows to SLOBurnRate, by target."""
    out: dict[str, dict[str, Any]] = {}
    for b in BURN_RATES:
        values: dict[str, Any] = {"success": True, "burn_threshold": b.factor}
        for key, value in (("burn_rate", status.burn_rates[b.long]),
                           ("short_burn_rate", status.burn_rates[b.short]),
                           ("error_budget_remaining", status.error_budget_remaining)):
            if value is not None:  # no event in the window: unknown, so no alert
                values[key] = round(value, 3)
        out[slo_target(status.slo.name, b.long)] = values
    return out


# which of our Grafana dashboards (dashboards/, by uid) shows what a rule is about
_DASHBOARD_BY_TYPE = {"service": "crypitor-webhooks", "follower": "crypitor-webhooks",
                      "slo": "crypitor-overview", "ethereum": "crypitor-nodes",
                      "eos": "crypitor-nodes", "xrpl": "crypitor-nodes",
                      "bitcoin": "crypitor-nodes"}
_NODE_VALUES = frozenset({"head_block", "block_lag", "head_age_seconds", "peers", "syncing",
                          "chain_id", "lib_lag", "server_state", "load_factor"})


def dashboard_uid(rule: RuleSpec) -> str:
    """The dashboard of `rule`: by the type it matches, else by the values it reads."""
    kind = rule.match.get("type", "")
    if kind in _DASHBOARD_BY_TYPE:
        return _DASHBOARD_BY_TYPE[kind]
    if set(rule.condition.names) & _NODE_VALUES:
        return "crypitor-nodes"
    return "crypitor-probes"


def linked_rules(section: AlertsSection, grafana: GrafanaSection | None) -> list[RuleSpec]:
    """`all_rules(section)` with the default runbook and dashboard links: the README's
    runbook anchors under `[alerts].runbook_base`, and with `[grafana]` the dashboard that
    shows what the rule is about."""
    def dashboard(rule: RuleSpec) -> str:
        if grafana is None:
            return ""
        return f"{grafana.url.rstrip('/')}/d/{dashboard_uid(rule)}"
    return with_links(all_rules(section), section.runbook_base, dashboard)


class _Increase:
    """How much a counter grew within the last `window`, from samples taken now and then
    (the first sample counts from zero: the counter started with the process)."""

    def __init__(self, window: timedelta) -> None:
        self._window = window
        self._samples: list[tuple[datetime, float]] = []
        self._base = 0.0  # the value at the window's start, as far as known

    def add(self, at: datetime, value: float) -> float:
        self._samples.append((at, value))
        while self._samples and self._samples[0][0] <= at - self._window:
            self._base = self._samples.pop(0)[1]
        return value - self._base


class ServiceWatch:
    """The embedded service seen by alerting: a target of type `service` (queue depth and
    age, and the share of failed delivery attempts over the last DELIVERY_WINDOW) and one of
    type `follower` per chain it follows (deep reorgs within DEEP_REORG_WINDOW). Counters
    are read from the service's registry by their sample names."""

    def __init__(self, alerting: Alerting, service: WatchedService, followed: Sequence[str],
                 clock: Clock) -> None:
        self._alerting, self._service, self._clock = alerting, service, clock
        self._deliveries = {o: _Increase(DELIVERY_WINDOW) for o in OUTCOMES}
        self._deep = {chain: _Increase(DEEP_REORG_WINDOW) for chain in followed}

    async def look(self) -> None:
        now = self._clock()
        registry = self._service.metrics.registry
        for chain, deep in self._deep.items():
            count = registry.get_sample_value(m.FOLLOWER_DEEP_REORGS.name,
                                              {"chain": chain}) or 0.0
            self._alerting.observe(follower_target(chain), {"type": "follower", "chain": chain},
                                   {"success": True, "deep_reorgs_1h": deep.add(now, count)})
        try:
            stats = await self._service.store.stats(now)
        except Exception as exc:  # the store is down: that is what the probes report
            log.debug("cannot read the service's queue: %s", exc)
            return
        grew = {o: attempts.add(now, registry.get_sample_value(
                    m.WEBHOOK_DELIVERIES.name, {"outcome": o}) or 0.0)
                for o, attempts in self._deliveries.items()}
        values: dict[str, Any] = {"success": True, "queue_depth": stats.depth,
                                  "oldest_pending_age_seconds": stats.oldest_pending_age}
        total = sum(grew.values())
        if total > 0:  # no attempt in the window: no ratio, and no alert
            values["delivery_failure_ratio"] = (total - grew["success"]) / total
        self._alerting.observe(SERVICE_TARGET, {"type": "service"}, values)


@dataclass(frozen=True)
class Prepared:
    """A reload's alerting, checked and built but not yet running (`MonitorAlerting.prepare`)."""

    section: AlertsSection
    receivers: Mapping[str, AnyReceiver]
    bots: Mapping[str, OnCallBot]


@dataclass(frozen=True)
class ClusterPlace:
    """What the alerting of a `[cluster]` instance needs: the resolved Redis URL, the lease
    (seconds), the quorum, and the key prefix."""

    url: str
    lease: float
    quorum: int
    prefix: str = PREFIX


class MonitorAlerting:
    """The alerting of `crypitor run`: build from `[alerts]`, feed probe results to
    `observe()`, `await start(service)`, `await stop()`."""

    def __init__(self, section: AlertsSection, data_dir: Path,
                 states: Sequence[TargetState], registry: CollectorRegistry,
                 env: Mapping[str, str], watch_service: bool,
                 clock: Clock = utc_now, spawn: Spawn | None = None,
                 followed: Sequence[str] = (), cluster: ClusterPlace | None = None,
                 slos: Sequence[SloConfig] = (), grafana: GrafanaSection | None = None
                 ) -> None:
        """`spawn` (the monitor's supervisor) runs the alert loops, the bots and the
        service watch; `followed` names the chains the service follows; `slos` are alerted
        on through their synthetic targets (`observe_slos`); `grafana` gives the rules'
        default dashboard links."""
        self.states = states
        self._labels_of: dict[str, Mapping[str, str]] | None = None
        self.slos = tuple(slos)
        self._grafana = grafana
        self._clock = clock
        self._spawn = spawn or Supervisor().supervise
        self.cluster = cluster
        self.store: Store
        if cluster is None:
            self.store = AlertStore(data_dir / "alerts.sqlite3")
        else:
            redis_store = RedisAlertStore(cluster.url, holder=new_holder(),
                                          prefix=cluster.prefix)
            self.store = redis_store
        self.followed = tuple(followed) if watch_service else ()
        self._watches_service = watch_service
        self._env = env
        self._receiver_configs: dict[str, ReceiverConfig] = {}
        self.receivers: dict[str, AnyReceiver] = {}
        self.bots: dict[str, OnCallBot] = {}
        self._bot_tasks: dict[str, asyncio.Task[None]] = {}
        self._started = False
        self.receivers = self._receivers(section)
        self._receiver_configs = {rc.name: rc for rc in section.receivers}
        self.leader: AlertingLeader | None = None
        self._leader_task: asyncio.Task[None] | None = None
        evaluator: Evaluator
        if cluster is None:
            evaluator = Evaluator(linked_rules(section, grafana), self.store.load_states(),
                                  self._targets(states))
        else:  # states are read when this instance takes the lead
            evaluator = QuorumEvaluator(
                linked_rules(section, grafana), {}, self._targets(states),
                quorum=cluster.quorum,
                windows={s.name: 2 * s.config.interval + cluster.lease for s in states})
        self.alerting = Alerting(evaluator, self._router(section), self.store, self.receivers,
                                 _Counters(registry), clock, self._spawn,
                                 watchdog=section.watchdog)
        if cluster is not None:
            assert isinstance(evaluator, QuorumEvaluator)
            self.leader = AlertingLeader(
                cluster.url, alerting=self.alerting, store=redis_store, evaluator=evaluator,
                labels=self._labels, lease=cluster.lease, registry=registry,
                spawn=self._spawn, prefix=cluster.prefix, on_lead=self._lead,
                on_stand_by=self._stand_by)
            self.alerting.on_not_leader = self.leader.lost
        self.bots = self._bots(section, self.receivers, states)
        if not section.receivers:
            log.info("no [[alerts.receivers]]: alerts are evaluated and listed at "
                     "/api/v1/alerts, but nothing is sent")
        self._tasks: list[asyncio.Task[None]] = []
        self._service: WatchedService | None = None

    def _targets(self, states: Sequence[TargetState]) -> dict[str, Mapping[str, str]]:
        targets: dict[str, Mapping[str, str]] = {
            s.name: {**s.config.labels, "type": s.config.type} for s in states}
        if self._watches_service:
            targets[SERVICE_TARGET] = {"type": "service"}
        for chain in self.followed:
            targets[follower_target(chain)] = {"type": "follower", "chain": chain}
        targets.update(slo_targets(self.slos))
        return targets

    @staticmethod
    def _router(section: AlertsSection) -> Router:
        route = section.route
        if not route.receiver and section.receivers:
            route = replace(route, receiver=section.receivers[0].name)
        return Router(route, section.inhibit, section.maintenance)

    def _receivers(self, section: AlertsSection) -> dict[str, AnyReceiver]:
        """The receivers of `section`; one configured exactly as before is the very object
        already running (a reload keeps its sender and its bot)."""
        out: dict[str, AnyReceiver] = {}
        for i, rc in enumerate(section.receivers):
            if self._receiver_configs.get(rc.name) == rc:
                out[rc.name] = self.receivers[rc.name]
                continue
            if rc.type == "webhook":
                out[rc.name] = self._webhook(rc, f"alerts.receivers[{i}]")
                continue
            token = resolve(rc.bot_token, f"alerts.receivers[{i}].bot_token", self._env)
            chat = resolve(rc.chat_id, f"alerts.receivers[{i}].chat_id", self._env)
            chat = self.store.get(CHAT_DOC + rc.name) or chat  # a migrated group's new id
            sender = TelegramSender(token, chat, message_thread_id=rc.message_thread_id,
                                    api_url=rc.api_url, on_migrate=self._migrated(rc.name))
            out[rc.name] = TelegramReceiver(rc.name, sender, self._clock, self.target_url)
        return out

    def _webhook(self, rc: ReceiverConfig, path: str) -> WebhookReceiver:
        url = resolve(rc.url, f"{path}.url", self._env)
        secret = resolve(rc.secret, f"{path}.secret", self._env)
        try:
            return WebhookReceiver(rc.name, url, secret, target_url=self.target_url,
                                   clock=self._clock)
        except ValueError as exc:  # a secret from the environment that is no whsec_ secret
            raise BadSecret(f"{path}.secret", rc.secret[4:], str(exc)) from None

    def target_url(self, target: str) -> str:
        """A configured target's URL as it may be shown (credentials and query removed,
        an env: reference as written), for the messages about its alerts."""
        state = next((s for s in self.states if s.name == target), None)
        return "" if state is None else state.config.display_url

    def _bots(self, section: AlertsSection, receivers: Mapping[str, AnyReceiver],
              states: Sequence[TargetState]) -> dict[str, OnCallBot]:
        """The on-call bots of `section` (one per Telegram receiver); a receiver kept keeps
        its bot."""
        out: dict[str, OnCallBot] = {}
        for rc in section.receivers:
            receiver = receivers[rc.name]
            if not isinstance(receiver, TelegramReceiver):
                continue
            bot = self.bots.get(rc.name)
            if bot is not None and bot.sender is receiver.sender:
                out[rc.name] = bot
                continue
            allowed = [resolve(c, f"alerts.receivers.{rc.name}.command_chat_ids", self._env)
                       for c in rc.command_chat_ids] or [receiver.sender.chat_id]
            out[rc.name] = OnCallBot(rc.name, self.alerting, receiver.sender, allowed,
                                     [s.name for s in states], self.down, self._clock)
        return out

    def prepare(self, section: AlertsSection, states: Sequence[TargetState]) -> Prepared:
        """The first half of a config reload, which changes nothing: the receivers and bots
        `section` asks for (those unchanged are the running ones). Raises SecretError when
        an env: value of theirs is unset."""
        receivers = self._receivers(section)
        return Prepared(section, receivers, self._bots(section, receivers, states))

    async def reload(self, prepared: Prepared, states: Sequence[TargetState],
                     slos: Sequence[SloConfig] | None = None) -> None:
        """The second half: rules, route tree, inhibit rules, maintenance windows, receivers
        and bots swapped in, for the targets of `states` (the list `self.states` becomes).
        Alert states of rules that remain are kept. Everything is swapped before the first
        await, so no probe result meets half a config; then the senders and bots no longer
        configured are stopped and the new ones started."""
        section = prepared.section
        self._labels_of = None  # the targets' labels may have changed
        evaluator = self.alerting.evaluator
        if isinstance(evaluator, QuorumEvaluator) and self.cluster is not None:
            evaluator.windows = {s.name: 2 * s.config.interval + self.cluster.lease
                                 for s in states}  # a changed interval moves its window
        names = [s.name for s in states]
        for bot in prepared.bots.values():
            bot.set_targets(names)
        old_receivers, old_bots = self.receivers, self.bots
        self.receivers, self.bots = dict(prepared.receivers), dict(prepared.bots)
        self._receiver_configs = {rc.name: rc for rc in section.receivers}
        self.alerting.watchdog = section.watchdog
        if slos is not None:
            self.slos = tuple(slos)
        await self.alerting.reconfigure(linked_rules(section, self._grafana),
                                        self._targets(states),
                                        self._router(section), prepared.receivers)
        for name, bot in old_bots.items():
            if self.bots.get(name) is not bot:
                await _cancel(self._bot_tasks.pop(name, None))
        for name, receiver in old_receivers.items():
            if self.receivers.get(name) is not receiver:
                with contextlib.suppress(Exception):
                    await receiver.close()
        if self._started:
            self._start_bots()

    def _start_bots(self) -> None:
        for name, bot in self.bots.items():
            receiver = self.receivers[name]
            if name not in self._bot_tasks and isinstance(receiver, TelegramReceiver):
                self._bot_tasks[name] = self._spawn(
                    f"telegram-bot-{name}", functools.partial(self._run_bot, bot, receiver))

    def _migrated(self, name: str) -> OnMigrate:
        def remember(old: str, new: str) -> None:
            log.warning("Telegram chat %s of receiver %s became %s; following it", old, name,
                        new)
            self.store.put(CHAT_DOC + name, new)
        return remember

    def down(self) -> list[Down]:
        return [(s.name, s.last.reason.value if s.last and s.last.reason else "down", s.since)
                for s in self.states if s.up is False]

    def _labels(self, target: str) -> Mapping[str, str] | None:
        # by name: the leader asks for every result of the cluster
        if self._labels_of is None:  # `reload` forgets it
            self._labels_of = {s.name: {**s.config.labels, "type": s.config.type}
                               for s in self.states}
        return self._labels_of.get(target)

    async def start(self, service: WatchedService | None = None) -> None:
        self._service = service
        if self.leader is not None:  # the rest starts when this instance takes the lead
            self._leader_task = self._spawn("alerting-leader", self.leader.run,
                                            essential=True)
            return
        await self.alerting.start()
        await self._lead()

    async def _lead(self) -> None:
        """Bots and the service watch: with [cluster], on the leader only."""
        self._started = True
        self._start_bots()
        if self._service is not None:
            self._tasks.append(self._spawn("service-watch", functools.partial(
                self._watch_service, self._service)))

    async def _stand_by(self) -> None:
        self._started = False
        tasks = [*self._bot_tasks.values(), *self._tasks]
        self._bot_tasks, self._tasks = {}, []
        for task in tasks:
            await _cancel(task)

    async def _run_bot(self, bot: OnCallBot, receiver: TelegramReceiver) -> None:
        delay = 1.0
        while True:
            try:
                await receiver.ready()
                break
            except NotifyError as exc:
                log.warning("Telegram receiver %s not reachable yet (%s); retrying in %.0f s",
                            receiver.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(60.0, delay * 2)
        await bot.run()

    async def _watch_service(self, service: WatchedService) -> None:
        watch = ServiceWatch(self.alerting, service, self.followed, self._clock)
        while True:
            await asyncio.sleep(SERVICE_EVERY)
            await watch.look()

    def observe(self, state: TargetState, values: Mapping[str, Any], detail: str) -> None:
        """A result of this instance's probes; with [cluster] they reach the leader through
        the results stream instead, so none is fed here."""
        if self.cluster is not None:
            return
        self.alerting.observe(state.name, {**state.config.labels, "type": state.config.type},
                              values, detail)

    def observe_slos(self, statuses: Sequence[SloStatus]) -> None:
        """An evaluation of the SLOs, as values of their synthetic targets; with [cluster]
        only the leader alerts (every instance evaluates, from the cluster's counts)."""
        if self.cluster is not None and not self.alerting.leading:
            return
        labels = slo_targets([s.slo for s in statuses])
        for status in statuses:
            for target, values in slo_values(status).items():
                self.alerting.observe(target, labels[target], values)

    async def stop(self) -> None:
        if self._leader_task is not None and self.leader is not None:
            await _cancel(self._leader_task)  # stands by, then lets the lease go
            await self.leader.close()
        tasks = [*self._bot_tasks.values(), *self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.alerting.stop()
        for receiver in self.receivers.values():
            with contextlib.suppress(Exception):
                await receiver.close()
        self.store.close()


async def _cancel(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
