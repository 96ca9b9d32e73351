"""Assembles the delivery service: store, API server, dispatcher and queue statistics.

Runs on its own (`crypitor service`) or inside `crypitor run`; both hand it `[service]`
(read through `service.settings`, `env:` values resolved) and call `start()` / `stop()`.
Shutdown may begin with `drain()` (`/readyz` answers 503, every request still served); `stop()`
then stops accepting and gives requests and deliveries in flight `shutdown_timeout` (none
once `hurry()` was called), returns the deliveries that did not finish to the queue, then
closes the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp

from chains.ethereum import EthereumClient
from core import signing
from core.clock import Clock, utc_now
from core.httpserver import HardenedRunner, start_server
from core.leases import Lease
from core.supervisor import Supervisor
from service import StoreError, UnsafeTarget
from service.api import ApiDeps, ServiceApi
from service.delivery import (
    DispatchConfig,
    Dispatcher,
    Guard,
    Policy,
    Saturation,
    WebhookClient,
    check_url,
)
from service.follow import ChainFollower, CursorLeases, cursor_name
from service.keys import ensure_api_keys, load_api_keys
from service.metrics import FollowerMetrics, ServiceMetrics, new_metrics
from service.models import Endpoint
from service.settings import ServiceSettings
from service.store import Store, open_store

log = logging.getLogger("crypitor.service")
STATS_EVERY = 5.0
RPC_TIMEOUT = 10.0  # seconds per call to a followed chain's node


class Service:
    def __init__(self, settings: ServiceSettings, data_dir: Path, *,
                 allowed_sockets: Sequence[tuple[str, int, str]] = (),
                 store: Store | None = None, clock: Clock = utc_now,
                 metrics: ServiceMetrics | None = None,
                 supervisor: Supervisor | None = None) -> None:
        """`allowed_sockets`: exact (ip, port, path) triples the SSRF guard lets through
        although private, such as the monitor's canary sink (that path only). The background
        tasks run under `supervisor` (by default one counting crashes on the service's own
        registry); the dispatcher is essential: `/readyz` answers 503 while it waits for its
        restart."""
        self.settings = settings
        self.clock = clock
        self.data_dir = data_dir
        self.store = store or open_store(settings.queue, data_dir)
        self.metrics: ServiceMetrics = metrics or new_metrics()
        self.supervisor = supervisor or Supervisor(self.metrics.task_crashed)
        self.guard = Guard(settings.allow_private_targets, settings.allowed_networks,
                           allowed_sockets)
        self.dispatcher: Dispatcher | None = None
        self._runner: HardenedRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._client: WebhookClient | None = None
        self._rpc_session: aiohttp.ClientSession | None = None
        self._signers = signing.SignerCache()
        self._hurry = asyncio.Event()
        self.api_keys: list[str] = []
        self._api: ServiceApi | None = None

    def _sign(self, endpoint: Endpoint, msg_id: str, timestamp: int, body: bytes) -> str:
        return self._signers.get(endpoint.secret).signature(msg_id, timestamp, body)

    def _check_url(self, url: str) -> None:
        try:
            check_url(url, self.guard)
        except UnsafeTarget as exc:  # registration answers 422 naming the address
            raise ValueError(str(exc)) from None

    async def start(self) -> None:
        s = self.settings
        loaded = load_api_keys(s.api_keys, self.data_dir, "service_api_key")
        self.api_keys = loaded.keys
        if (origin := loaded.origin("service API key")) is not None:
            log.info("%s", origin)
        await self.store.open()
        # pooled connections, kept per host: deliveries to one endpoint reuse them
        client = self._client = WebhookClient(self.guard, s.request_timeout)
        self.dispatcher = Dispatcher(
            self.store, client, self._sign, self.metrics,
            DispatchConfig(Policy(s.retry_schedule, s.disable_after), s.request_timeout,
                           s.max_in_flight_per_endpoint), clock=self.clock)
        api = ServiceApi(ApiDeps(self.store, self.metrics, loaded.keys, self._check_url,
                                 signing.new_secret, signing.parse_secret,
                                 wake=self.dispatcher.wake, down=self.supervisor.down,
                                 chains={n: c.confirmations for n, c in s.chains.items()},
                                 clock=self.clock))
        self._api = api
        self._runner = await start_server(api.app(), s.listen)
        spawn = self.supervisor.supervise
        saturation = Saturation(lambda: self.dispatcher.held_share if self.dispatcher else 0.0,
                                self.metrics.saturation.set)
        self._tasks = [spawn("dispatcher", self.dispatcher.run, essential=True),
                       spawn("queue-stats", self._stats_loop),
                       spawn("saturation", saturation.run)]
        self._tasks += self._start_followers(self.dispatcher.wake)
        log.info("webhook service listening on http://%s (queue: %s)", s.listen,
                 "redis" if s.queue != "sqlite" else "sqlite")

    def reload_access(self, api_keys: Sequence[str],
                      allowed_networks: Sequence[str]) -> None:
        """A config reload's part of `[service]`: the API keys (empty: the generated one) and
        the networks deliveries may always reach, effective from the next request and the
        next connection on. ValueError names a bad network, and then nothing changes."""
        guard_before = self.guard.allowed_networks
        self.guard.allow_networks(allowed_networks)
        try:
            keys, _ = ensure_api_keys(api_keys, self.data_dir, "service_api_key")
        except OSError:
            self.guard.allowed_networks = guard_before
            raise
        self.api_keys = keys
        if self._api is not None:
            self._api.set_api_keys(keys)

    def _start_followers(self, wake: Callable[[], None]) -> list[asyncio.Task[None]]:
        """One follower per configured chain. Every process sharing a queue starts them; the
        lease on a chain's cursor decides which one follows it (`service.follow.leases`). Node
        URLs come from the operator, not from customers: their own session, without the SSRF
        guard."""
        specs = self.settings.chains
        if not specs:
            return []
        self._rpc_session = aiohttp.ClientSession()
        metrics = FollowerMetrics.create(self.metrics.registry)
        tasks = []
        for name, spec in specs.items():
            client = EthereumClient(self._rpc_session, spec.rpc_url, RPC_TIMEOUT,
                                    max_response_bytes=spec.max_response_bytes)
            lease = Lease(CursorLeases(self.store), cursor_name(name), f"chain {name}")
            follower = ChainFollower(name, spec, client, self.store, metrics, self.clock,
                                     wake=wake, lease=lease, spawn=self.supervisor.supervise)
            tasks.append(self.supervisor.supervise(f"follower-{name}", follower.run))
        return tasks

    async def _stats_loop(self) -> None:
        while True:
            try:
                self.metrics.observe_stats(await self.store.stats(self.clock()))
            except StoreError:
                log.warning("cannot read queue statistics", exc_info=True)
            await asyncio.sleep(STATS_EVERY)

    def drain(self) -> None:
        """The first step of a shutdown: `/readyz` answers 503, every request is still
        served (with `Connection: close`) until `stop()`."""
        if self._runner is not None:
            self._runner.drain()

    def hurry(self) -> None:
        """Cut short the wait of a `stop()` (begun or to come) for work in flight: what has
        not finished goes back to the queue at once."""
        self._hurry.set()

    async def stop(self) -> None:
        """Stop accepting; requests and deliveries in flight get `shutdown_timeout` together;
        deliveries that did not finish are returned to the queue."""
        grace = 0.0 if self._hurry.is_set() else self.settings.shutdown_timeout
        closing = []
        if self._runner is not None:
            closing.append(self._runner.close(grace))
        if self.dispatcher is not None:
            closing.append(self.dispatcher.stop(grace, self._hurry))
        await asyncio.gather(*closing)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.close()
        if self._rpc_session is not None:
            await self._rpc_session.close()
        await self.store.close()
