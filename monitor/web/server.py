"""The monitor's HTTP server: /metrics, /healthz, /readyz, /api/v1/targets, the status page's
routes (`monitor.web.status_api`), and the alerting routes of `monitor.web.alerts_api`.

Errors are JSON `{"error", "field"}`, never a stack trace. Methods other than GET/HEAD need
`Authorization: Bearer <monitor api key>`; keys are compared in constant time, and an address
sending too many wrong ones is answered 429 for a while (`core.httpserver.AuthThrottle`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.openmetrics.exposition import (
    CONTENT_TYPE_LATEST as OPENMETRICS_TYPE,
)
from prometheus_client.openmetrics.exposition import (
    generate_latest as generate_openmetrics,
)

import catalog.metrics as m
from core import signing
from core.clock import Clock, utc_now
from core.httpserver import AuthThrottle
from monitor.cluster import ClusterView, TargetView
from monitor.config import StatusPageSection
from monitor.runtime import History, TargetState
from monitor.web.errors import Handler, error, json_errors
from monitor.web.openapi import document, registered
from monitor.web.status_api import StatusRoutes
from monitor.web.status_data import Sources, StatusBoard
from probes.webhook_canary import CanaryInbox

log = logging.getLogger(__name__)
TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_STAMP_DIGITS = 12  # seconds since 1970: 10 digits until the year 2286
MAX_SIGNATURES = 8  # `v1,...` entries looked at: one per secret the service signs with


def target_json(state: TargetState, uptime: dict[str, float | None] | None,
                view: TargetView | None = None) -> dict[str, Any]:
    """A target as the API shows it; with `[cluster]` (`view`), `up` and `last_result` are
    the cluster's and `locations` holds each location's last result."""
    c = state.config
    out = {
        "name": c.name,
        "type": c.type,
        "url": c.display_url,
        "labels": dict(c.labels),
        "interval_seconds": c.interval,
        "timeout_seconds": c.timeout,
        "up": state.up,
        "since": state.since.isoformat() if state.since else None,
        "consecutive_failures": state.consecutive_failures,
        "probes": {"success": state.successes, "failure": state.failures,
                   "skipped": state.skipped},
        "last_result": state.last.as_json() if state.last else None,
        "uptime": uptime or {},
    }
    if view is not None:
        out["up"] = view.up
        out["last_result"] = view.last.as_json() if view.last else None
        out["locations"] = {loc: x.as_json() for loc, x in view.locations.items()}
    return out


class MonitorApi:
    def __init__(self, states: Sequence[TargetState], registry: CollectorRegistry,
                 history: History, api_keys: Sequence[str],
                 inbox: CanaryInbox | None = None,
                 extra_routes: Callable[[web.UrlDispatcher], None] | None = None,
                 clock: Clock = utc_now,
                 not_ready: Callable[[], str | None] = lambda: None,
                 throttle: AuthThrottle | None = None,
                 reload: Callable[[], Awaitable[list[str]]] | None = None,
                 view: ClusterView | None = None, status: StatusRoutes | None = None) -> None:
        """`not_ready` says why `/readyz` answers 503 (not probing yet, stopping, an
        essential task down), or None. `reload` re-reads the config (`POST /-/reload`): the
        errors that kept it from being applied, none when it was. `view` ([cluster]): the
        targets as every location sees them, for the API and the status page. `status`:
        the status page's routes; by default a page with `[status_page]`'s defaults and
        no incidents."""
        self._view = view
        self.status = status or StatusRoutes(StatusBoard(
            states, history, StatusPageSection, Sources(), clock, view))
        self._inbox = inbox
        self._not_ready = not_ready
        self._clock = clock
        self._extra_routes = extra_routes
        self._signer = signing.Signer(inbox.secret) if inbox is not None else None
        self._states = states
        self._by_name = {s.name: s for s in states}
        self._registry = registry
        self._history = history
        self._keys = [k.encode() for k in api_keys]
        self._reload = reload
        self._started = time.monotonic()
        self._throttle = throttle or AuthThrottle()
        self._disconnects = Counter(
            m.HTTP_CLIENT_DISCONNECTS.name, m.HTTP_CLIENT_DISCONNECTS.help,
            m.HTTP_CLIENT_DISCONNECTS.labels, registry=registry).labels("monitor")
        self._auth_throttled = Counter(
            m.HTTP_AUTH_THROTTLED.name, m.HTTP_AUTH_THROTTLED.help,
            m.HTTP_AUTH_THROTTLED.labels, registry=registry).labels("monitor")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[json_errors(log, hangup_field="body",
                                                            on_hangup=self._hung_up),
                                                self._auth],
                              client_max_size=256 * 1024)
        self.status.add_routes(app.router)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/openapi.json", self.openapi)
        app.router.add_get("/api/v1/targets", self.targets)
        app.router.add_get("/api/v1/targets/{name}", self.target)
        if self._reload is not None:
            app.router.add_post("/-/reload", self.reload)
        if self._extra_routes is not None:  # alerting, when configured
            self._extra_routes(app.router)
        if self._inbox is not None:
            app.router.add_post("/canary/{key}", self.canary_sink)
        return app

    def _hung_up(self, request: web.Request) -> None:
        log.debug("client hung up during %s %s", request.method, request.path)
        self._disconnects.inc()

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in ("GET", "HEAD", "OPTIONS") or request.path.startswith("/canary/"):
            return await handler(request)  # the canary sink checks webhook signatures instead
        wait = self._throttle.refuse(request.headers.get("Authorization", ""), self._keys,
                                     request.remote or "")
        if wait is None:
            return await handler(request)  # a valid key is never throttled
        if wait:
            self._auth_throttled.inc()
            return error(429, "too many wrong API keys from this address; retry later",
                         "Authorization", {"Retry-After": str(wait)})
        return error(401, "missing or wrong API key", "Authorization")

    def reloaded(self, api_keys: Sequence[str]) -> None:
        """After a config reload: the targets list changed in place, and the keys may have
        rotated (from the next request on; no connection is dropped)."""
        self._by_name = {s.name: s for s in self._states}
        self._keys = [k.encode() for k in api_keys]

    async def reload(self, _request: web.Request) -> web.Response:
        assert self._reload is not None
        errors = await self._reload()
        if errors:
            return web.json_response({"error": "the config was not applied; the previous one "
                                      "keeps running", "field": "config", "errors": errors},
                                     status=422)
        return web.json_response({"status": "applied", "targets": len(self._states)})

    async def metrics(self, request: web.Request) -> web.Response:
        accept = request.headers.get("Accept", "")
        # rendering thousands of targets takes a while: keep the event loop (and with it
        # the scheduler) free while it happens
        if "application/openmetrics-text" in accept:
            body = await asyncio.to_thread(generate_openmetrics, self._registry)
            return web.Response(body=body, headers={"Content-Type": OPENMETRICS_TYPE})
        body = await asyncio.to_thread(generate_latest, self._registry)
        return web.Response(body=body, headers={"Content-Type": TEXT_TYPE})

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({
            "status": "ok",
            "targets": len(self._states),
            "uptime_seconds": round(time.monotonic() - self._started, 3),
        })

    async def readyz(self, _request: web.Request) -> web.Response:
        why = self._not_ready()
        if why is not None:
            return web.json_response({"status": why}, status=503)
        return web.json_response({"status": "ready"})

    async def openapi(self, request: web.Request) -> web.Response:
        """The description of the routes this app registered (alerting and the canary sink
        only when configured)."""
        return web.json_response(document(registered(request.app.router)))

    async def _views(self, states: Sequence[TargetState]) -> dict[str, TargetView]:
        return {} if self._view is None else await self._view.targets(states)

    async def targets(self, _request: web.Request) -> web.Response:
        ratios = await self._history.ratios(self._by_name)
        views = await self._views(self._states)
        return web.json_response([target_json(s, ratios.get(s.name), views.get(s.name))
                                  for s in self._states])

    async def target(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        state = self._by_name.get(name)
        if state is None:
            return error(404, f"no target named {name!r}", "name")
        ratios = await self._history.ratios([name])
        views = await self._views([state])
        return web.json_response(target_json(state, ratios.get(name), views.get(name)))

    async def canary_sink(self, request: web.Request) -> web.Response:
        """Deliveries of canary events: counted only when the signature is ours."""
        arrived = time.monotonic()
        assert self._inbox is not None and self._signer is not None
        body = await request.read()
        msg_id = request.headers.get("webhook-id", "")
        stamp = request.headers.get("webhook-timestamp", "")
        given = request.headers.get("webhook-signature", "").split()
        # Standard Webhooks headers are ASCII, the timestamp a count of seconds: anything
        # else (non-ASCII, "²", 5,000 digits) is simply not our signature
        if not (msg_id.isascii() and stamp.isascii() and stamp.isdecimal()
                and len(stamp) <= MAX_STAMP_DIGITS):
            return error(401, "bad or missing webhook signature", "webhook-signature")
        expected = self._signer.signature(msg_id, int(stamp), body).encode()
        if not any(hmac.compare_digest(sig.encode("utf-8", "surrogateescape"), expected)
                   for sig in given[:MAX_SIGNATURES]):
            return error(401, "bad or missing webhook signature", "webhook-signature")
        try:
            nonce = json.loads(body)["data"]["nonce"]
        except (ValueError, KeyError, TypeError):
            return error(422, "not a canary event", "data.nonce")
        self._inbox.arrived(str(nonce), arrived)
        return web.Response(status=204)
