"""Wires the embedded webhook service for `crypitor run` and `crypitor service`: its
settings from `[service]` (env: values resolved), where it reaches the monitor's canary
sink, and the service run alone until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
from collections.abc import Mapping, Sequence

from monitor.config import Config, SecretError, resolve
from service import StoreError
from service.app import ChainSpec, Service, Settings

log = logging.getLogger("crypitor")


def sink_socket(listen: str) -> tuple[str, int]:
    """Where the service reaches the monitor's canary sink: its listen address, with a
    wildcard bind reached on loopback."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::") or host == "localhost":
        host = "127.0.0.1"
    return host, int(port)


def service_settings(config: Config, env: Mapping[str, str],
                     allowed_sockets: Sequence[tuple[str, int]] = ()) -> Settings:
    """The service's settings from `[service]`, with its env: keys resolved."""
    s = config.service
    keys = [resolve(k, f"service.api_keys[{i}]", env) for i, k in enumerate(s.api_keys)]
    return Settings(listen=s.listen, data_dir=config.data_dir, queue=s.queue, api_keys=keys,
                    allow_private_targets=s.allow_private_targets,
                    allowed_networks=s.allowed_networks, allowed_sockets=allowed_sockets,
                    retry_schedule=s.retry_schedule,
                    request_timeout=s.request_timeout,
                    max_in_flight_per_endpoint=s.max_in_flight_per_endpoint,
                    disable_after=s.disable_after,
                    chains={name: c.confirmations for name, c in s.chains.items()},
                    followers={name: ChainSpec(resolve(c.rpc_url, f"service.chains.{name}.rpc_url",
                                                       env), c.confirmations, c.poll_interval,
                                               c.chain_id, c.start_block)
                               for name, c in s.chains.items()})


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
        service = Service(service_settings(config, os.environ))
        await service.start()
    except (OSError, SecretError, sqlite3.Error, StoreError) as exc:
        log.error("cannot start the webhook service: %s", exc)
        return 1
    await stop.wait()
    log.info("shutting down")
    await service.stop()
    log.info("stopped")
    return 0
