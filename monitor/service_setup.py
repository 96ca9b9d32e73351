"""Wires the embedded webhook service for `crypitor run` and `crypitor service`: `[service]`
handed over with its env: values resolved, where it reaches the monitor's canary sink, the
service run alone until SIGTERM or SIGINT, and the drained shutdown both commands share.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from core.clock import Clock, utc_now
from monitor.config import (
    Config,
    ConfigError,
    SecretError,
    ServiceSection,
    load,
    resolve,
    resolve_fields,
)
from monitor.datadir import run_locked
from monitor.reload import service_needs_restart
from service import StoreError
from service.app import Service

log = logging.getLogger("crypitor")


def sink_socket(listen: str) -> tuple[str, int]:
    """Where the service reaches the monitor's canary sink: its listen address, with a
    wildcard bind reached on loopback."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::") or host == "localhost":
        host = "127.0.0.1"
    return host, int(port)


def resolved(section: ServiceSection, env: Mapping[str, str]) -> ServiceSection:
    """`[service]` as the service reads it: every env: value resolved (its API keys, each
    chain's `rpc_url`); SecretError names the key of an unset variable."""
    section = resolve_fields(section, "service", env)
    chains = {name: resolve_fields(c, f"service.chains.{name}", env)
              for name, c in section.chains.items()}
    return replace(section, chains=chains)


def new_service(config: Config, env: Mapping[str, str],
                allowed_sockets: Sequence[tuple[str, int, str]] = (),
                clock: Clock = utc_now) -> Service:
    """The webhook service of `config`, its env: values resolved from `env`."""
    return Service(resolved(config.service, env), config.data_dir,
                   allowed_sockets=allowed_sockets, clock=clock)


@dataclass
class StopSignals:
    """SIGTERM or SIGINT: the first sets `stop` (a graceful shutdown), any later one `hurry`
    (skip what is left of the drain and of the wait for work in flight)."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    hurry: asyncio.Event = field(default_factory=asyncio.Event)

    def received(self) -> None:
        if self.stop.is_set():
            self.hurry.set()
        self.stop.set()


def stop_on_signals() -> StopSignals:
    """The events SIGTERM and SIGINT set: the cue for a graceful shutdown, then to hurry."""
    signals = StopSignals()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, signals.received)
    return signals


class Drainable(Protocol):
    """What `shut_down` stops: the service alone, or the whole monitor."""

    def drain(self) -> None: ...
    def hurry(self) -> None: ...
    async def stop(self) -> None: ...


async def shut_down(part: Drainable, section: ServiceSection, signals: StopSignals) -> None:
    """After the first stop signal: drain for `shutdown_drain` (`/readyz` 503, every request
    still served), then close the listeners, giving work in flight `shutdown_timeout`. A
    further signal cuts both short; nothing acknowledged is lost either way (deliveries not
    finished go back to the queue)."""
    log.info("draining for %gs: /readyz answers 503, requests are still served",
             section.shutdown_drain)
    part.drain()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(signals.hurry.wait(), section.shutdown_drain)

    async def hurry() -> None:
        await signals.hurry.wait()
        log.info("second stop signal: stopping at once, unfinished work returns to the queue")
        part.hurry()

    hurrying = asyncio.create_task(hurry())
    await asyncio.sleep(0)  # a signal that came during the drain hurries before the stop
    log.info("closing the listeners; work in flight has %gs to finish",
             0.0 if signals.hurry.is_set() else section.shutdown_timeout)
    try:
        await part.stop()
    finally:
        hurrying.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hurrying


def reload_on_sighup(reload: Callable[[], Awaitable[list[str]]]) -> None:
    """SIGHUP runs `reload` in the background (it logs what it did and what kept it from
    applying a config); a bug in it is logged, never fatal."""
    loop = asyncio.get_running_loop()
    running: set[asyncio.Task[list[str]]] = set()

    def done(task: asyncio.Task[list[str]]) -> None:
        running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("config reload failed", exc_info=task.exception())

    def hup() -> None:
        log.info("SIGHUP: reading the config file again")
        task = asyncio.ensure_future(reload())
        running.add(task)
        task.add_done_callback(done)

    loop.add_signal_handler(signal.SIGHUP, hup)


def reload_service(service: Service, running: Config, env: Mapping[str, str]) -> list[str]:
    """`crypitor service` on SIGHUP: read `running.path` again and rotate the service's API
    keys and allowed networks; the rest of `[service]` needs a restart (logged). Returns the
    errors that kept the new config from being applied, each logged."""
    try:
        new = load(running.path)
        keys = [resolve(k, f"service.api_keys[{i}]", env)
                for i, k in enumerate(new.service.api_keys)]
        service.reload_access(keys, new.service.allowed_networks)
    except ConfigError as exc:
        errors = [str(issue) for issue in exc.issues]
    except (SecretError, ValueError, OSError) as exc:
        errors = [str(exc)]
    else:
        for key in service_needs_restart(running.service, new.service):
            log.warning("config reload: %s changed; it takes effect at the next restart", key)
        log.info("config reloaded from %s: service API keys and allowed networks applied",
                 running.path)
        return []
    log.error("config reload from %s refused, the running config stays: %d error(s)",
              running.path, len(errors))
    for e in errors:
        log.error("config reload: %s", e)
    return errors


async def run_service(config: Config) -> int:
    """`crypitor service`: the webhook service alone, until SIGTERM/SIGINT; SIGHUP rotates
    its API keys and allowed networks (`reload_service`)."""
    return await run_locked(config.data_dir, lambda: _run_service_locked(config), log,
                            "cannot start the webhook service")


async def _run_service_locked(config: Config) -> int:
    signals = stop_on_signals()
    try:
        service = new_service(config, os.environ)
        await service.start()
    except (OSError, SecretError, sqlite3.Error, StoreError) as exc:
        log.error("cannot start the webhook service: %s", exc)
        return 1

    async def reload() -> list[str]:
        return reload_service(service, config, os.environ)

    reload_on_sighup(reload)
    await signals.stop.wait()
    log.info("shutting down")
    await shut_down(service, config.service, signals)
    log.info("stopped")
    return 0
