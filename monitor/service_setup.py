"""Wires the embedded webhook service for `crypitor run` and `crypitor service`: `[service]`
handed over with its env: values resolved, where it reaches the monitor's canary sink, and the
service run alone until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import replace

from core.clock import Clock, utc_now
from monitor.config import Config, SecretError, ServiceSection, resolve_fields
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


def stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets: the cue for a graceful shutdown."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_service(config: Config) -> int:
    """`crypitor service`: the webhook service alone, until SIGTERM/SIGINT."""
    stop = stop_on_signals()
    try:
        service = new_service(config, os.environ)
        await service.start()
    except (OSError, SecretError, sqlite3.Error, StoreError) as exc:
        log.error("cannot start the webhook service: %s", exc)
        return 1
    await stop.wait()
    log.info("shutting down")
    await service.stop()
    log.info("stopped")
    return 0
