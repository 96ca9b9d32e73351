"""Wires the monitor together for `crypitor run`: probes, scheduler, metrics, API, history.

Everything is built here and passed down; this module owns start-up and the orderly
shutdown that SIGTERM or SIGINT triggers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import aiohttp
import redis.asyncio as aioredis
from prometheus_client import Counter
from yarl import URL

import catalog.metrics as m
from core import signing
from core.clock import Clock, utc_now
from core.formats import FormatError
from core.httpserver import HardenedRunner, start_server
from core.supervisor import Supervisor
from dashboards.build import all_dashboards
from dashboards.pusher import GrafanaPusher
from monitor.alerting_setup import ClusterPlace, MonitorAlerting
from monitor.cluster import (
    PREFIX,
    ClusterHistory,
    ClusterUnavailable,
    ClusterView,
    Membership,
    Ownership,
    ProbeGate,
    RedisSloHistory,
    ResultFeed,
    connect,
    recently_probed,
)
from monitor.config import (
    Config,
    ConfigError,
    SecretError,
    TargetConfig,
    load,
    resolve,
    resolve_fields,
)
from monitor.datadir import run_locked
from monitor.exporters import GcpExporter, new_registry
from monitor.reload import ReloadGauges, TargetChange, diff_targets, effective, needs_restart
from monitor.runtime import (
    SLO_EVERY,
    History,
    Job,
    ProbeScheduler,
    SloBook,
    SqliteSloHistory,
    TargetState,
    UptimeHistory,
    last_good,
    slo_collector,
)
from monitor.service_setup import (
    new_service,
    reload_on_sighup,
    shut_down,
    sink_socket,
    stop_on_signals,
)
from monitor.web import AlertsApi, MonitorApi, Slos, Sources, StatusBoard, StatusRoutes
from probes.base import Clock as ProbeClock
from probes.base import (
    OptionError,
    Outcome,
    Probe,
    ProbeContext,
    ProbeResult,
    Reason,
    SystemClock,
)
from probes.httpmessage import user_agent
from probes.registry import TYPES
from probes.webhook_canary import CanaryInbox, WebhookCanaryOptions, WebhookCanaryProbe
from service import StoreError
from service.app import Service
from service.keys import ApiKeys, ensure_api_keys, load_api_keys

log = logging.getLogger("crypitor")
FLUSH_EVERY = 60.0
CLUSTER_FLUSH_EVERY = 5.0  # the cluster's history: other instances read it, so sooner


@dataclass(frozen=True)
class BrokenProbe:
    """Stands in for a target that cannot be probed as configured; reports why, each run."""

    reason: Reason
    detail: str
    clock: ProbeClock = field(default_factory=SystemClock)

    async def run(self) -> ProbeResult:
        outcome = Outcome(self.clock)
        outcome.fail(self.reason, self.detail)
        return outcome.result()


def new_session(location: str = "") -> aiohttp.ClientSession:
    # One session for every RPC probe. Each request sets its own timeout; this one is
    # only a backstop. DNS answers are cached briefly, as a node fleet repeats names.
    # With [cluster] the User-Agent names the location, as the HTTP probe's does.
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=30, enable_cleanup_closed=True)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300),
                                 headers={"User-Agent": user_agent(location,
                                                                   "crypitor-monitor")})


@dataclass(frozen=True)
class Canary:
    """What webhook_canary probes need from the monitor: its sink, and a default key."""

    inbox: CanaryInbox
    service_key: str = ""  # the embedded service's API key, when there is one


def build_probe(target: TargetConfig, index: int, ctx: ProbeContext,
                env: Mapping[str, str], canary: Canary | None = None) -> Probe:
    """The target's probe, or a BrokenProbe saying why it cannot run (logged once here)."""
    path = f"targets[{index}]"
    ptype = TYPES[target.type]
    try:
        url = resolve(target.url, f"{path}.url", env)
        options = resolve_fields(target.options, path, env)
        if isinstance(options, WebhookCanaryOptions):
            if canary is None:
                return BrokenProbe(Reason.CONFIG, "the canary needs the monitor's sink: run it"
                                   " with `crypitor run`", ctx.clock)
            if not options.api_key:
                options = replace(options, api_key=canary.service_key)
            return WebhookCanaryProbe(url, target.timeout, options, ctx, canary.inbox)
        assert ptype.build is not None  # every other type has a constructor
        return ptype.build(url, target.timeout, options, ctx)
    except SecretError as exc:
        log.warning("target %s cannot run: %s", target.name, exc)
        return BrokenProbe(Reason.CONFIG, str(exc), ctx.clock)
    except OptionError as exc:
        # an env: value that resolved to something invalid; never echo the value itself
        log.warning("target %s cannot run: %s.%s: %s", target.name, path, exc.key, exc.message)
        return BrokenProbe(Reason.CONFIG, f"{path}.{exc.key}: {exc.message}", ctx.clock)


class Runtime:
    """The running monitor: build with a config, `await start()`, `await stop()`.

    `start()` enters each part into one exit stack as it starts it, so `stop()` (also after
    a failed start) stops what did start, in reverse: exports, history flusher, scheduler,
    API server, webhook service, alerting, then the history is flushed and closed and the
    HTTP session closed last.

    Every background task runs under one supervisor, made by `supervisor` from the crash
    counter on the monitor's registry; the alert flush loop is essential to `/readyz`.

    With `[cluster]` (keys under `cluster_prefix` in its Redis): membership, probing on the
    wall-clock grid behind the ownership gate, results fed to Redis, the cluster's uptime
    history instead of SQLite, and the cluster-wide view in the API and the status page.
    """

    def __init__(self, config: Config, env: Mapping[str, str] | None = None,
                 clock: Clock = utc_now,
                 supervisor: Callable[[Callable[[str], None]], Supervisor] = Supervisor,
                 cluster_prefix: str = PREFIX) -> None:
        self.config = config
        self.cluster_prefix = cluster_prefix
        self.env = os.environ if env is None else env
        self.clock = clock
        self.states = [TargetState(t) for t in config.targets]
        self._by_name = {s.name: s for s in self.states}
        self.ownership: Ownership | None = None  # [cluster], once started
        self.registry, self._sched_metrics = new_registry(
            self.states, config.cluster.location if config.cluster else None,
            self._shown if config.cluster else None)
        crashes = Counter(m.TASK_CRASHES.name, m.TASK_CRASHES.help, m.TASK_CRASHES.labels,
                          registry=self.registry)
        self._crashed: Callable[[str], None] = lambda task: crashes.labels(task).inc()
        self.supervisor = supervisor(self._crashed)
        self._probing = False  # /readyz: probing runs and no stop has begun
        # [cluster]: the cluster's history in Redis, made by start() (the URL may be an env:)
        self._history: History | None = None if config.cluster else UptimeHistory(
            config.data_dir / "history.sqlite3")
        # [cluster]: the SLO counts go to the cluster's Redis, made by start()
        self.slos: SloBook | None = None if config.cluster else SloBook(
            config.slos, SqliteSloHistory(config.data_dir / "slo.sqlite3"), clock)
        self.registry.register(slo_collector(lambda: self.slos))
        self.slo_every = SLO_EVERY  # seconds between SLO evaluations (tests shorten it)
        self.inbox: CanaryInbox | None = None
        if any(t.type == "webhook_canary" for t in config.targets):
            host, port = sink_socket(config.monitor.listen)
            self.inbox = CanaryInbox(f"http://{host}:{port}/canary", signing.new_secret())
        self._parts = contextlib.AsyncExitStack()
        self._runner: HardenedRunner | None = None
        self._status_runner: HardenedRunner | None = None  # [status_page].listen
        self._service: Service | None = None
        self._hurry = asyncio.Event()
        self.reload_gauges = ReloadGauges(self.registry, clock)
        self._reloading = asyncio.Lock()
        self._started: _Started | None = None
        self._canary_key = ""  # the service key the running canaries were built with
        self.membership: Membership | None = None
        self._feed: ResultFeed | None = None
        self._cluster_redis: aioredis.Redis | None = None
        self.slo_status: Slos = self.slo_statuses  # the status page's SLO section

    @property
    def history(self) -> History:
        assert self._history is not None, "the cluster's history is made by start()"
        return self._history

    def _shown(self, state: TargetState) -> bool:
        """[cluster]: whether /metrics shows the target's gauges (probed here recently)."""
        own = self.ownership
        return own is not None and recently_probed(state, own.owns, self.clock())

    def _canary_exemptions(self) -> list[tuple[str, int, str]]:
        """What the embedded service's SSRF guard lets through: the canary sink's socket, for
        the exact paths the canaries register their endpoints with, and nothing else on the
        monitor's port (its API stays out of customers' reach)."""
        if self.inbox is None:
            return []
        host, port = sink_socket(self.config.monitor.listen)
        out = []
        for i, target in enumerate(self.config.targets):
            if target.type != "webhook_canary":
                continue
            try:
                url = resolve(target.url, f"targets[{i}].url", self.env)
            except SecretError:
                continue  # that probe cannot run (build_probe says why), so needs no path
            out.append((host, port, URL(self.inbox.sink_url(url)).raw_path))
        return out

    def _canary(self, service: Service | None) -> Canary | None:
        if self.inbox is None:
            return None
        return Canary(self.inbox, service.api_keys[0] if service is not None else "")

    def _jobs(self, ctx: ProbeContext, service: Service | None) -> Sequence[Job]:
        canary = self._canary(service)
        self._canary_key = canary.service_key if canary is not None else ""
        return [Job(state, build_probe(state.config, i, ctx, self.env, canary))
                for i, state in enumerate(self.states)]

    async def start(self) -> None:
        parts = self._parts
        cluster = self.config.cluster
        session = new_session(cluster.location if cluster else "")
        parts.push_async_callback(session.close)
        parts.push_async_callback(self.supervisor.stop)  # whatever its owner left running
        parts.push_async_callback(self._close_history)
        loaded = self._monitor_keys(self.config)
        keys = loaded.keys
        if (origin := loaded.origin("monitor API key")) is not None:
            log.info("%s", origin)
        alerting = MonitorAlerting(self.config.alerts, self.config.data_dir, self.states,
                                   self.registry, self.env, self.config.service.enabled,
                                   self.clock, self.supervisor.supervise,
                                   followed=tuple(self.config.service.chains),
                                   cluster=self._alerting_place(), slos=self.config.slos,
                                   grafana=self.config.grafana)
        parts.push_async_callback(alerting.stop)
        view = self._cluster_parts(parts) if cluster is not None else None
        # The service starts after the API server and stops after it; the scheduler and the
        # flusher start after the exports and stop after them: their stops wait in stacks
        # entered before the server's and the exports' own.
        service_part = await parts.enter_async_context(contextlib.AsyncExitStack())
        status = StatusRoutes(StatusBoard(
            self.states, self.history, lambda: self.config.status_page,
            Sources(alerting=lambda: alerting.alerting,
                    windows=lambda: self.config.alerts.maintenance,
                    slos=lambda: self.slo_status()),
            self.clock, view))
        api = MonitorApi(self.states, self.registry, self.history, keys, self.inbox,
                         AlertsApi(alerting.alerting, self.clock).routes, self.clock,
                         not_ready=self.not_ready, reload=self.reload_file, view=view,
                         status=status)
        runner = self._runner = await start_server(api.app(), self.config.monitor.listen)
        parts.push_async_callback(self._close_listener, runner)
        log.info("monitor listening on http://%s", self.config.monitor.listen)
        if self.config.status_page.listen:  # the status page alone, for publishing
            public = self._status_runner = await start_server(status.public_app(),
                                                              self.config.status_page.listen)
            parts.push_async_callback(self._close_listener, public)
            log.info("status page listening on http://%s", self.config.status_page.listen)
        service = None
        if self.config.service.enabled:
            service = self._service = new_service(self.config, self.env,
                                                  self._canary_exemptions(), self.clock)
            if self._hurry.is_set():
                service.hurry()
            service_part.push_async_callback(service.stop)
            await service.start()
        await alerting.start(service)
        probing = await parts.enter_async_context(contextlib.AsyncExitStack())
        await self._start_exports(parts)
        ctx = ProbeContext(session=session,
                           last_result=lambda name: last_good(self._by_name, name),
                           location=cluster.location if cluster else "")
        gate = None
        if self.ownership is not None:
            gate = ProbeGate(self.ownership)
        active = None
        if self.ownership is not None:
            soon = self.ownership.soon
            active = lambda job: soon(job.state.config)  # noqa: E731 (a one-line predicate)
        scheduler = ProbeScheduler(self._jobs(ctx, service), self._sched_metrics,
                                   lambda job, result: self._on_result(job, result, alerting),
                                   on_crash=self._crashed, grid=cluster is not None,
                                   gate=gate, active=active)
        if self.ownership is not None:  # fire only this instance's share, as it changes
            self.ownership.on_change.append(scheduler.refresh)
        probing.push_async_callback(scheduler.stop)
        scheduler.start()
        self._started = _Started(ctx, scheduler, alerting, api, service)
        self._probing = True
        self.reload_gauges.applied()
        probing.push_async_callback(
            _cancelled, self.supervisor.supervise("history-flush", self._flush_loop))
        probing.push_async_callback(
            _cancelled, self.supervisor.supervise("slo-evaluate", functools.partial(
                self._slo_loop, alerting, service)))
        if cluster is not None:
            self._join(parts)

    def cluster_url(self) -> str:
        """`[cluster].redis` with an env: value resolved. An unset env: variable raises
        SecretError, a value that is no Redis URL ClusterUnavailable (naming the key, never
        the value: it may hold a password)."""
        cluster = self.config.cluster
        assert cluster is not None
        try:
            return replace(cluster, redis=resolve(cluster.redis, "cluster.redis",
                                                  self.env)).redis
        except OptionError as exc:
            raise ClusterUnavailable(f"cluster.redis: {exc.message} (as read from "
                                     f"{cluster.redis})") from None

    def _alerting_place(self) -> ClusterPlace | None:
        """With [cluster]: alerting in the cluster's Redis, led by one instance."""
        cluster = self.config.cluster
        if cluster is None:
            return None
        return ClusterPlace(self.cluster_url(), cluster.lease, cluster.quorum,
                            self.cluster_prefix)

    def _cluster_parts(self, parts: contextlib.AsyncExitStack) -> ClusterView:
        """[cluster]: membership, ownership, the results feed, the history and the view, on
        one Redis client (membership keeps its own); their tasks start with `_join`."""
        cluster = self.config.cluster
        assert cluster is not None
        url, prefix = self.cluster_url(), self.cluster_prefix
        redis = self._cluster_redis = connect(url)
        parts.push_async_callback(redis.aclose)
        membership = self.membership = Membership(
            url, location=cluster.location, instance=cluster.instance, lease=cluster.lease,
            registry=self.registry, prefix=prefix)
        parts.push_async_callback(membership.close)
        instance = membership.instance
        self.ownership = Ownership(instance, cluster.location, self.states, self.registry,
                                   lease=cluster.lease)
        membership.listeners.append(self.ownership.update)
        self._feed = ResultFeed(redis, instance, cluster.location, self.registry, prefix)
        self._history = ClusterHistory(redis, prefix, lambda: self.clock().timestamp())
        self.slos = SloBook(self.config.slos, RedisSloHistory(redis, prefix), self.clock)
        return ClusterView(redis, instance=instance, location=cluster.location,
                           lease=cluster.lease, prefix=prefix, clock=self.clock)

    def _join(self, parts: contextlib.AsyncExitStack) -> None:
        """Heartbeat into the cluster's Redis and feed it the results; a clean stop leaves
        at once, before anything else stops."""
        assert self.membership is not None and self._feed is not None
        parts.push_async_callback(
            _cancelled, self.supervisor.supervise("cluster-feed", self._feed.run))
        parts.push_async_callback(
            _cancelled, self.supervisor.supervise("cluster-membership", self.membership.run,
                                                  essential=True))

    def _monitor_keys(self, config: Config) -> ApiKeys:
        """`[monitor].api_keys` with env: values resolved (SecretError names an unset one);
        none configured: the generated key."""
        return load_api_keys([resolve(k, f"monitor.api_keys[{i}]", self.env)
                                for i, k in enumerate(config.monitor.api_keys)],
                               config.data_dir, "monitor_api_key")

    async def reload_file(self) -> list[str]:
        """SIGHUP and `POST /-/reload`: read the config file again and apply it. Returns
        the errors that kept it from being applied (each logged, with its key and value;
        the running config stays), none when it was applied."""
        try:
            new = load(self.config.path)
        except ConfigError as exc:
            return self._refused([str(issue) for issue in exc.issues])
        return await self.reload(new)

    def _refused(self, errors: list[str]) -> list[str]:
        log.error("config reload from %s refused, the running config stays: %d error(s)",
                  self.config.path, len(errors))
        for e in errors:
            log.error("config reload: %s", e)
        self.reload_gauges.refused()
        return errors

    async def reload(self, new: Config) -> list[str]:
        """Apply `new` to the running monitor (see CONTRACT.md, "Signals"): targets added,
        removed or changed take effect, unchanged ones keep their job, state and schedule;
        rules, receivers, routes, inhibit rules and maintenance windows are replaced, alert
        states of remaining rules kept; the monitor's and the service's API keys and the
        service's allowed networks rotate. Keys that need a restart are logged and keep
        their running values. Returns the errors that kept `new` from being applied."""
        async with self._reloading:
            started = self._started
            if started is None:
                return self._refused(["the monitor is still starting or stopping"])
            restart = needs_restart(self.config, new)
            new = effective(self.config, new)
            try:  # everything that can fail first, so that a failure changes nothing
                keys = self._monitor_keys(new).keys
                service_keys: list[str] = []
                if started.service is not None:  # (allowed_networks were checked by load)
                    service_keys, _ = ensure_api_keys(
                        [resolve(k, f"service.api_keys[{i}]", self.env)
                         for i, k in enumerate(new.service.api_keys)],
                        new.data_dir, "service_api_key")
                canary = None
                if self.inbox is not None:
                    canary = Canary(self.inbox, service_keys[0] if service_keys else "")
                change = self._diff_targets(new, started, canary)
                states = change.states
                alerting = started.alerting.prepare(new.alerts, states)
            except SecretError as exc:
                return self._refused([str(exc)])
            except OSError as exc:  # data_dir, writing a generated key
                return self._refused([f"monitor.data_dir: {exc}"])
            if started.service is not None:
                started.service.reload_access(service_keys, new.service.allowed_networks)
            # no await until the alerting has its new targets: no probe result meets half
            # of the new config
            for job in change.retired:
                started.scheduler.remove(job)
            self.states[:] = states
            self._by_name.clear()
            self._by_name.update((s.name, s) for s in states)
            await started.alerting.reload(alerting, states, new.slos)
            if self.slos is not None:
                self.slos.reconfigure(new.slos)
            for job in change.jobs:
                started.scheduler.add(job)
            started.api.reloaded(keys)
            self._canary_key = canary.service_key if canary is not None else ""
            self.config = new
            self.reload_gauges.applied()
            for key in restart:
                log.warning("config reload: %s changed; it takes effect at the next restart",
                            key)
            log.info("config reloaded from %s: %d targets (%s)", new.path, len(states),
                     change.summary())
            return []

    def _diff_targets(self, new: Config, started: _Started,
                      canary: Canary | None) -> TargetChange:
        """`diff_targets` for this monitor: a canary sending with the service's key is
        changed when that key is."""
        def rekeyed(target: TargetConfig) -> bool:
            return (target.type == "webhook_canary" and canary is not None
                    and canary.service_key != self._canary_key
                    and not getattr(target.options, "api_key", ""))

        return diff_targets(started.scheduler.jobs, new.targets,
                            lambda i, t: build_probe(t, i, started.ctx, self.env, canary),
                            rekeyed)

    def not_ready(self) -> str | None:
        """Why `/readyz` answers 503, or None when ready."""
        if not self._probing:
            return "not probing (starting or stopping)"
        down = self.supervisor.down()
        if down:
            return "task down: " + ", ".join(down)
        if self.membership is not None and not self.membership.joined:
            return "not joined the cluster yet (Redis not reached)"
        return None

    async def _start_exports(self, parts: contextlib.AsyncExitStack) -> None:
        """Grafana and Google Cloud Monitoring, when configured: both work in the
        background, and neither can stop monitoring (they log and retry)."""
        if self.config.gcp is not None:
            section = resolve_fields(self.config.gcp, "gcp", self.env)
            gcp = GcpExporter(section, self.registry, spawn=self.supervisor.supervise)
            parts.push_async_callback(gcp.stop)
            await gcp.start()
        g = self.config.grafana
        if g is not None:
            try:
                token = resolve(g.token, "grafana.token", self.env)
            except SecretError as exc:
                log.error("dashboards not pushed to Grafana: %s", exc)
                return
            grafana = GrafanaPusher(g.url, token, g.folder, g.prometheus_url,
                                    all_dashboards(g.prometheus_url),
                                    spawn=self.supervisor.supervise)
            parts.push_async_callback(grafana.stop)
            grafana.start()

    def _on_result(self, job: Job, result: ProbeResult, alerting: MonitorAlerting) -> None:
        state = job.state
        flip = state.record(result)
        self.history.record(state.name, result.success, result.started_at.timestamp(),
                            result.duration)
        if self.slos is not None:
            self.slos.record_probe(state.config, result.success, result.started_at.timestamp())
        if self._feed is not None:
            self._feed.publish(state.name, result)
        alerting.observe(state, result.named_values(), result.detail)
        if flip == "down":
            reason = result.reason.value if result.reason else "unknown"
            log.warning("target %s is DOWN: %s: %s", state.name, reason, result.detail,
                        extra={"target": state.name, "failure_reason": reason})
        elif flip == "up":
            log.info("target %s is UP", state.name, extra={"target": state.name})

    async def _flush_loop(self) -> None:
        while True:  # a failure (a full disk) is the supervisor's: logged, counted, restarted
            await asyncio.sleep(FLUSH_EVERY if self.config.cluster is None
                                else CLUSTER_FLUSH_EVERY)
            await self.history.flush()

    async def _slo_loop(self, alerting: MonitorAlerting, service: Service | None) -> None:
        """Every SLO_EVERY: the service's deliveries counted, every SLO evaluated (the
        crypitor_slo_* gauges and the status page read the result), its burn rates given to
        alerting, and the counts written."""
        book = self.slos
        assert book is not None
        while True:
            if service is not None:
                book.sample_service(service.metrics.registry, self.clock().timestamp())
            alerting.observe_slos(await book.evaluate())
            await book.history.flush()
            await asyncio.sleep(self.slo_every)

    def slo_statuses(self) -> list[dict[str, object]]:
        """For the status page: `[{name, objective, window, attained,
        error_budget_remaining}]` as of the last evaluation (objective and attained in
        percent, the budget a ratio that may go below 0; None before any event)."""
        return self.slos.statuses() if self.slos is not None else []

    async def _close_history(self) -> None:
        if self.slos is not None:
            await self.slos.history.flush()
            self.slos.history.close()
        if self._history is None:  # [cluster], and start() failed before making it
            return
        await self._history.flush()
        self._history.close()

    def drain(self) -> None:
        """The first step of a shutdown: `/readyz` of the monitor and the service answers 503
        while every request is still served, on the status page's listener too, each answer
        with `Connection: close`, until `stop()`."""
        self._probing = False
        for runner in (self._runner, self._status_runner):
            if runner is not None:
                runner.drain()
        if self._service is not None:
            self._service.drain()

    def hurry(self) -> None:
        """Cut short the wait of `stop()` for requests and deliveries in flight."""
        self._hurry.set()
        if self._service is not None:
            self._service.hurry()

    async def _close_listener(self, runner: HardenedRunner) -> None:
        await runner.close(0.0 if self._hurry.is_set() else
                           self.config.service.shutdown_timeout)

    async def stop(self) -> None:
        self._probing = False
        self._started = None  # a reload from now on is refused
        await self._parts.aclose()


@dataclass(frozen=True)
class _Started:
    """The parts of a started Runtime that a config reload changes."""

    ctx: ProbeContext
    scheduler: ProbeScheduler
    alerting: MonitorAlerting
    api: MonitorApi
    service: Service | None


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def run(config: Config) -> int:
    """`crypitor run`: start, wait for SIGTERM/SIGINT, shut down; the exit code. SIGHUP
    reloads the config (`Runtime.reload_file`)."""
    return await run_locked(config.data_dir, lambda: _run_locked(config), log, "cannot start")


async def _run_locked(config: Config) -> int:
    signals = stop_on_signals()
    try:
        runtime = Runtime(config)
    except (OSError, sqlite3.Error, FormatError) as exc:  # FormatError: a newer build's file
        log.error("cannot start: data_dir %s: %s", config.data_dir, exc)
        return 1
    reload_on_sighup(runtime.reload_file)  # refused (and logged) until started
    try:
        await runtime.start()
    except (OSError, SecretError, StoreError, FormatError, ClusterUnavailable) as exc:
        # port in use, data_dir, unset env, a store file of an unknown version, a bad
        # [cluster].redis from the environment:
        log.error("cannot start: %s", exc)
        await runtime.stop()
        return 1
    await signals.stop.wait()
    log.info("shutting down")
    await shut_down(runtime, config.service, signals)
    log.info("stopped")
    return 0
