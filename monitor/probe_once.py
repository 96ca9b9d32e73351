"""`crypitor probe NAME`: one configured target probed once, its result printed as JSON.

A `webhook_canary` needs what `crypitor run` hosts: the canary sink on `[monitor].listen`
and, when the canary goes through the embedded service, that service. For this one run they
are started here and stopped after it. When a running monitor already holds that address or
the data directory, the canary cannot be probed from here (its delivery would reach the
other process's sink), and the command says so and exits 1 without a result.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Iterable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry
from yarl import URL

from core import signing
from core.httpserver import start_server
from monitor.app import Canary, build_probe, new_session
from monitor.config import Config, SecretError, TargetConfig, resolve, resolve_fields
from monitor.datadir import DataDirBusy, DataDirLock
from monitor.runtime import Buckets, TargetState, last_good, run_bounded
from monitor.service_setup import new_service, sink_socket
from monitor.web import MonitorApi
from probes.base import OptionError, ProbeContext
from probes.webhook_canary import CanaryInbox, WebhookCanaryOptions
from service import StoreError


class CannotProbe(Exception):
    """What keeps a canary from being probed by this command (not a down target)."""


async def probe_once(config: Config, name: str) -> int:
    """0 up, 1 down or not probeable from here, 2 no such target."""
    target = config.target(name)
    if target is None:
        names = ", ".join(t.name for t in config.targets) or "none configured"
        print(f"no target named {name!r} (targets: {names})", file=sys.stderr)
        return 2
    states = {t.name: TargetState(t) for t in config.targets}
    index = {t.name: i for i, t in enumerate(config.targets)}
    async with new_session() as session:
        ctx = ProbeContext(session=session, last_result=lambda n: last_good(states, n))
        ref = getattr(target.options, "reference", "")
        if ref in states:  # a reference by name: probe it first so block_lag can be given
            ref_target = states[ref].config
            ref_probe = build_probe(ref_target, index[ref], ctx, os.environ)
            states[ref].record(await run_bounded(ref_probe, ref_target.timeout))
        if target.type != "webhook_canary":
            probe = build_probe(target, index[name], ctx, os.environ)
            result = await run_bounded(probe, target.timeout)
        else:
            try:
                async with canary_host(config, target, index[name], os.environ) as canary:
                    probe = build_probe(target, index[name], ctx, os.environ, canary)
                    result = await run_bounded(probe, target.timeout)
            except CannotProbe as exc:
                print(f"cannot probe {name}: {exc}", file=sys.stderr)
                return 1
    out = {"target": target.name, "type": target.type, "url": target.display_url,
           **result.as_json()}
    print(json.dumps(out, indent=2, default=str))
    return 0 if result.success else 1


@contextlib.asynccontextmanager
async def canary_host(config: Config, target: TargetConfig, index: int,
                      env: Mapping[str, str]) -> AsyncIterator[Canary]:
    """The monitor's canary sink on `[monitor].listen`, and the embedded service when the
    canary goes through it without a key of its own, running while the block runs.
    Raises CannotProbe naming what is in the way."""
    listen = config.monitor.listen
    host, port = sink_socket(listen)
    inbox = CanaryInbox(f"http://{host}:{port}/canary", signing.new_secret())
    sink = MonitorApi([], CollectorRegistry(), _NoHistory(), [], inbox)
    # only the sink: the rest of the monitor's API has nothing to show in this run
    app = web.Application(client_max_size=256 * 1024)
    app.router.add_post("/canary/{key}", sink.canary_sink)
    try:
        runner = await start_server(app, listen)
    except OSError as exc:
        raise CannotProbe(
            f"the canary's sink lives on [monitor].listen {listen}, which is in use "
            f"({exc.strerror or exc}); a running `crypitor run` probes {target.name} itself:"
            f" GET http://{listen}/api/v1/targets/{target.name}") from None
    try:
        async with contextlib.AsyncExitStack() as stack:
            key = ""
            if _through_embedded_service(config, target, index, env):
                key = await stack.enter_async_context(
                    _embedded_service(config, env, (host, port, inbox, target, index)))
            yield Canary(inbox, key)
    finally:
        await runner.close(0.0)


def _through_embedded_service(config: Config, target: TargetConfig, index: int,
                              env: Mapping[str, str]) -> bool:
    """The canary posts to this config's own service and brings no `api_key`."""
    if not config.service.enabled:
        return False
    try:
        url = URL(resolve(target.url, f"targets[{index}].url", env))
        options = resolve_fields(target.options, f"targets[{index}]", env)
    except (SecretError, OptionError, ValueError):
        return False  # build_probe reports what is wrong
    if isinstance(options, WebhookCanaryOptions) and options.api_key:
        return False
    service_host, service_port = sink_socket(config.service.listen)
    canary_host_ = "127.0.0.1" if url.host in ("localhost", "0.0.0.0") else url.host
    return (canary_host_, url.port) == (service_host, service_port)


@contextlib.asynccontextmanager
async def _embedded_service(config: Config, env: Mapping[str, str],
                            where: tuple[str, int, CanaryInbox, TargetConfig, int],
                            ) -> AsyncIterator[str]:
    """`crypitor run`'s embedded service for the length of the block, its SSRF guard letting
    through the sink's path and nothing else of the monitor's port; yields its API key."""
    host, port, inbox, target, index = where
    try:
        lock = DataDirLock(config.data_dir)
    except DataDirBusy as exc:
        raise CannotProbe(f"the embedded service it goes through needs {exc}") from None
    except OSError as exc:
        raise CannotProbe(f"data_dir {config.data_dir}: {exc.strerror or exc}") from None
    with lock:
        url = resolve(target.url, f"targets[{index}].url", env)
        exempt = [(host, port, URL(inbox.sink_url(url)).raw_path)]
        try:
            service = new_service(config, env, exempt)
        except (SecretError, OSError) as exc:
            raise CannotProbe(f"cannot make the embedded service: {exc}") from None
        service.hurry()  # nothing to wait for when it stops: this run owns no traffic
        try:
            try:
                await service.start()
            except (OSError, SecretError, StoreError) as exc:
                raise CannotProbe(
                    f"cannot start the embedded service on {config.service.listen} it goes "
                    f"through: {exc}") from None
            yield service.api_keys[0]
        finally:
            await service.stop()


class _NoHistory:
    """The sink answers deliveries only: there is no uptime to keep in this run."""

    def record(self, target: str, success: bool, at: float,
               duration: float | None = None) -> None:
        return None

    async def flush(self) -> None:
        return None

    async def ratios(self, targets: Iterable[str]) -> dict[str, dict[str, float | None]]:
        return {}

    async def buckets(self, targets: Iterable[str]) -> dict[str, Buckets]:
        return {}

    def close(self) -> None:
        return None
