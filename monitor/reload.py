"""What a config reload (SIGHUP, `POST /-/reload`) may change and what needs a restart.

`Runtime.reload` applies a new config with these helpers: the keys that only take effect
at a restart (logged, then kept as they run), the config that then runs, and the two
gauges that tell Prometheus whether the last reload was applied.
"""

from __future__ import annotations

import logging
from dataclasses import fields, replace

from prometheus_client import CollectorRegistry, Gauge

import catalog.metrics as m
from core.clock import Clock
from monitor.config import Config, ServiceSection

log = logging.getLogger("crypitor")
# what [service] may change at a reload: the rest of it shapes the running service
SERVICE_RELOADABLE = frozenset({"api_keys", "allowed_networks"})


def needs_restart(running: Config, new: Config) -> list[str]:
    """The keys whose change `new` brings that a reload cannot apply, as key paths."""
    out = []
    if new.monitor.listen != running.monitor.listen:
        out.append("monitor.listen")
    if new.data_dir != running.data_dir:
        out.append("monitor.data_dir")
    for f in fields(ServiceSection):
        if f.name not in SERVICE_RELOADABLE and \
                getattr(new.service, f.name) != getattr(running.service, f.name):
            out.append(f"service.{f.name}")
    for section in ("grafana", "gcp"):
        if getattr(new, section) != getattr(running, section):
            out.append(section)
    return out


def effective(running: Config, new: Config) -> Config:
    """The config that runs after reloading `new`: its reloadable parts, the running
    values of the keys that need a restart."""
    service = replace(running.service, api_keys=new.service.api_keys,
                      allowed_networks=new.service.allowed_networks)
    monitor = replace(new.monitor, listen=running.monitor.listen,
                      data_dir=running.monitor.data_dir)
    return replace(new, path=running.path, monitor=monitor, service=service,
                   grafana=running.grafana, gcp=running.gcp)


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
