"""What a config reload (SIGHUP, `POST /-/reload`) may change and what needs a restart.

`Runtime.reload` applies a new config with these helpers: what the new targets change
(`diff_targets`), the keys that only take effect at a restart (logged, then kept as they
run), the config that then runs, and the two gauges that tell Prometheus whether the last
reload was applied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace

from prometheus_client import CollectorRegistry, Gauge

import catalog.metrics as m
from core.clock import Clock
from monitor.config import Config, ServiceSection, TargetConfig
from monitor.runtime import Job, TargetState
from probes.base import Probe

log = logging.getLogger("crypitor")
# what [service] may change at a reload: the rest of it shapes the running service
SERVICE_RELOADABLE = frozenset({"api_keys", "allowed_networks"})


def service_needs_restart(running: ServiceSection, new: ServiceSection) -> list[str]:
    """The `[service]` keys whose change a reload cannot apply, as key paths."""
    return [f"service.{f.name}" for f in fields(ServiceSection)
            if f.name not in SERVICE_RELOADABLE
            and getattr(new, f.name) != getattr(running, f.name)]


def needs_restart(running: Config, new: Config) -> list[str]:
    """The keys whose change `new` brings that a reload cannot apply, as key paths."""
    out = []
    if new.monitor.listen != running.monitor.listen:
        out.append("monitor.listen")
    if new.data_dir != running.data_dir:
        out.append("monitor.data_dir")
    if new.monitor.log_format != running.monitor.log_format:
        out.append("monitor.log_format")
    if new.status_page.listen != running.status_page.listen:
        out.append("status_page.listen")
    out += service_needs_restart(running.service, new.service)
    for section in ("grafana", "gcp", "cluster"):
        if getattr(new, section) != getattr(running, section):
            out.append(section)
    canaries = [i for i, t in enumerate(new.targets) if t.type == "webhook_canary"]
    if canaries and not any(t.type == "webhook_canary" for t in running.targets):
        # the canary sink is mounted at start, when a canary is configured
        out.append(f"targets[{canaries[0]}] (the first webhook_canary)")
    return out


def effective(running: Config, new: Config) -> Config:
    """The config that runs after reloading `new`: its reloadable parts, the running
    values of the keys that need a restart."""
    service = replace(running.service, api_keys=new.service.api_keys,
                      allowed_networks=new.service.allowed_networks)
    monitor = replace(new.monitor, listen=running.monitor.listen,
                      data_dir=running.monitor.data_dir,
                      log_format=running.monitor.log_format)
    status_page = replace(new.status_page, listen=running.status_page.listen)
    return replace(new, path=running.path, monitor=monitor, service=service,
                   grafana=running.grafana, gcp=running.gcp, cluster=running.cluster,
                   status_page=status_page)


class ReloadGauges:
    """`crypitor_config_last_reload_successful` and its success timestamp; a start counts
    as a successful load."""

    def __init__(self, registry: CollectorRegistry, clock: Clock) -> None:
        self._ok = Gauge(m.CONFIG_RELOAD_OK.name, m.CONFIG_RELOAD_OK.help, registry=registry)
        self._at = Gauge(m.CONFIG_RELOAD_TIME.name, m.CONFIG_RELOAD_TIME.help,
                         registry=registry)
        self._clock = clock

    def applied(self) -> None:
        self._ok.set(1)
        self._at.set(self._clock().timestamp())

    def refused(self) -> None:
        self._ok.set(0)


@dataclass
class TargetChange:
    """What a reload does to the targets: the new list of states (kept or new), in config
    order, the jobs to unschedule and those to schedule."""

    states: list[TargetState] = field(default_factory=list)
    retired: list[Job] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{what}: {', '.join(names)}" for what, names in (
            ("added", self.added), ("changed", self.changed), ("removed", self.removed))
            if names]
        return "; ".join(parts) or "no target changed"


def diff_targets(running: Sequence[Job], targets: Sequence[TargetConfig],
                 build: Callable[[int, TargetConfig], Probe],
                 rebuild: Callable[[TargetConfig], bool] = lambda _t: False) -> TargetChange:
    """A target configured exactly as before (and not asked to `rebuild`) keeps its job,
    hence its schedule, and its state (counts, last result); a new or changed one gets a
    new state and a job probing with `build(index, target)`; the rest are retired."""
    jobs = {job.state.name: job for job in running}
    change = TargetChange()
    for i, target in enumerate(targets):
        job = jobs.pop(target.name, None)
        if job is not None and job.state.config == target and not rebuild(target):
            change.states.append(job.state)
            continue
        state = TargetState(target)
        change.states.append(state)
        change.jobs.append(Job(state, build(i, target)))
        if job is None:
            change.added.append(target.name)
        else:
            change.changed.append(target.name)
            change.retired.append(job)
    change.retired += jobs.values()
    change.removed += jobs
    return change
