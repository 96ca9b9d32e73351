"""The service's HTTP API on aiohttp: endpoints, events, replay, address monitors and their
history, health, metrics, OpenAPI.

`/v1/*` needs `Authorization: Bearer <key>` (compared in constant time against every key).
Errors are JSON `{"error", "field"}`; a client can make a request fail, never a worker.
An event is answered 202 only after the store made it durable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web
from prometheus_client import generate_latest

from service import StoreError, monitors
from service import requests as parse
from service.metrics import ServiceMetrics
from service.models import Endpoint, Monitor, new_id
from service.openapi import OPENAPI
from service.store import Store
from service.views import endpoint_json, event_view_json, monitor_event_json, monitor_json

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PATCH_TRIES = 10  # reads of a monitor that other processes keep changing, then 409
MAX_REQUEST = 16 * 1024 * 1024  # a full batch; each event is held to 256 KB on its own


def json_response(value: Any, status: int = 200) -> web.Response:
    # msgspec encodes a 1000-id batch answer 5x faster than aiohttp's json.dumps
    return web.Response(body=msgspec.json.encode(value), status=status,
                        content_type="application/json")


def error(status: int, message: str, field: str | None = None) -> web.Response:
    return json_response({"error": message, "field": field}, status=status)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclasses.dataclass
class ApiDeps:
    store: Store
    metrics: ServiceMetrics
    api_keys: Sequence[str]
    check_url: Callable[[str], None]  # ValueError: bad URL; UnsafeTarget is a ValueError too
    new_secret: Callable[[], str]
    check_secret: Callable[[str], object]  # raises ValueError for a bad secret
    wake: Callable[[], None] = lambda: None  # tells the dispatcher new work is due
    clock: Callable[[], datetime] = utc_now
    # the configured chains ([service.chains.NAME]): name -> default confirmations
    chains: Mapping[str, int] = dataclasses.field(default_factory=dict)


class ServiceApi:
    def __init__(self, deps: ApiDeps) -> None:
        self.d = deps
        self._keys = [k.encode() for k in deps.api_keys]
        # PATCH reads, changes and writes back a whole monitor, written only over what it
        # read (`replace_monitor`); one at a time in this process, so that only PATCHes of
        # other processes sharing the store make it read again
        self._monitor_writes = asyncio.Lock()

    def app(self) -> web.Application:
        # one middleware, not two: on the ingest hot path each layer costs a coroutine
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_REQUEST)
        r = app.router
        r.add_get("/healthz", self.healthz)
        r.add_get("/readyz", self.readyz)
        r.add_get("/metrics", self.metrics)
        r.add_get("/openapi.json", self.openapi)
        r.add_post("/v1/endpoints", self.create_endpoint)
        r.add_get("/v1/endpoints", self.list_endpoints)
        r.add_get("/v1/endpoints/{id}", self.get_endpoint)
        r.add_patch("/v1/endpoints/{id}", self.patch_endpoint)
        r.add_delete("/v1/endpoints/{id}", self.delete_endpoint)
        r.add_post("/v1/endpoints/{id}/replay", self.replay)
        r.add_post("/v1/events", self.post_event)
        r.add_post("/v1/events/batch", self.post_batch)
        r.add_get("/v1/events/{id}", self.get_event)
        r.add_post("/v1/monitors", self.create_monitor)
        r.add_get("/v1/monitors", self.list_monitors)
        r.add_get("/v1/monitors/{id}", self.get_monitor)
        r.add_patch("/v1/monitors/{id}", self.patch_monitor)
        r.add_delete("/v1/monitors/{id}", self.delete_monitor)
        r.add_get("/v1/monitors/{id}/events", self.monitor_events)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authentication for /v1/*, then the handler with every error made JSON."""
        if request.path.startswith("/v1/") and not self._authorised(request):
            return error(401, "missing or wrong API key", "Authorization")
        try:
            return await handler(request)
        except parse.BadRequest as exc:
            return error(exc.status, exc.message, exc.field)
        except web.HTTPRequestEntityTooLarge:
            return error(413, f"body is larger than {MAX_REQUEST // 2**20} MB", "body")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error(exc.status, exc.reason)
        except StoreError:
            log.exception("store failed serving %s %s", request.method, request.path)
            return error(503, "the store is unavailable; nothing was accepted")
        except Exception:  # the log keeps the trace; the client gets none
            log.exception("error serving %s %s", request.method, request.path)
            return error(500, "internal error")

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        token = header[7:].encode() if header.startswith("Bearer ") else b""
        ok = False
        for key in self._keys:  # every key, so timing does not tell which came close
            ok |= hmac.compare_digest(token, key)
        return ok

    # --- health ----------------------------------------------------------------------
    async def healthz(self, _r: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(self, _r: web.Request) -> web.Response:
        try:
            ready = await asyncio.wait_for(self.d.store.ping(), 5)
        except (StoreError, TimeoutError):
            ready = False
        return json_response({"status": "ready" if ready else "store unavailable"},
                                 status=200 if ready else 503)

    async def metrics(self, _r: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, self.d.metrics.registry)
        return web.Response(body=body,
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def openapi(self, _r: web.Request) -> web.Response:
        return json_response(OPENAPI)

    # --- endpoints -------------------------------------------------------------------
    async def create_endpoint(self, request: web.Request) -> web.Response:
        f = parse.endpoint_fields(parse.parse_json(await request.read()), True,
                                  self.d.check_url, self.d.check_secret)
        assert f.url is not None  # required when creating
        endpoint = Endpoint(new_id("ep"), f.url, f.secret or self.d.new_secret(),
                            f.event_types or (), f.rate_limit, f.description or "",
                            created_at=self.d.clock())
        await self.d.store.put_endpoint(endpoint)
        return json_response(endpoint_json(endpoint, with_secret=True), status=201)

    async def _endpoint(self, request: web.Request) -> Endpoint:
        endpoint = await self.d.store.get_endpoint(request.match_info["id"])
        if endpoint is None:
            raise parse.BadRequest(404, "no such endpoint", "id")
        return endpoint

    async def list_endpoints(self, _r: web.Request) -> web.Response:
        return json_response([endpoint_json(e) for e in await self.d.store.list_endpoints()])

    async def get_endpoint(self, request: web.Request) -> web.Response:
        return json_response(endpoint_json(await self._endpoint(request)))

    async def patch_endpoint(self, request: web.Request) -> web.Response:
        f = parse.endpoint_fields(parse.parse_json(await request.read()), False,
                                  self.d.check_url, self.d.check_secret)
        endpoint = await self._endpoint(request)
        changes: dict[str, Any] = {}
        if f.url is not None:
            changes["url"] = f.url
        if f.event_types is not None:
            changes["event_types"] = f.event_types
        if f.rate_limit_given:
            changes["rate_limit"] = f.rate_limit
        if f.description is not None:
            changes["description"] = f.description
        if f.disabled is not None:
            changes["disabled"] = f.disabled
            if not f.disabled:  # re-enabled by a person: a fresh start
                changes.update(disabled_reason="", failing_since=None)
            elif not endpoint.disabled:
                changes["disabled_reason"] = "disabled through the API"
        endpoint = dataclasses.replace(endpoint, **changes)
        await self.d.store.put_endpoint(endpoint)
        if f.disabled is False:
            self.d.wake()
        return json_response(endpoint_json(endpoint))

    async def delete_endpoint(self, request: web.Request) -> web.Response:
        if not await self.d.store.delete_endpoint(request.match_info["id"]):
            raise parse.BadRequest(404, "no such endpoint", "id")
        return web.Response(status=204)

    async def replay(self, request: web.Request) -> web.Response:
        raw = await request.read()
        since, until = parse.time_window(parse.parse_json(raw) if raw.strip() else None)
        endpoint = await self._endpoint(request)
        count = await self.d.store.replay(endpoint.id, since, until, self.d.clock())
        self.d.wake()
        return json_response({"replayed": count}, status=202)

    # --- events ----------------------------------------------------------------------
    async def post_event(self, request: web.Request) -> web.Response:
        if (request.content_length or 0) > parse.MAX_EVENT_BYTES + 4096:
            raise parse.BadRequest(413, f"is larger than {parse.MAX_EVENT_BYTES // 1024} KB",
                                   "body")
        new = parse.event(await request.read())
        (event_id,) = await self.d.store.accept([new], self.d.clock())
        self.d.metrics.events.inc()
        self.d.wake()
        return json_response({"id": event_id}, status=202)

    async def post_batch(self, request: web.Request) -> web.Response:
        events = parse.batch(await request.read())
        ids = await self.d.store.accept(events, self.d.clock())
        self.d.metrics.events.inc(len(events))
        self.d.wake()
        return json_response({"ids": ids}, status=202)

    async def get_event(self, request: web.Request) -> web.Response:
        view = await self.d.store.get_event(request.match_info["id"])
        if view is None:
            raise parse.BadRequest(404, "no such event", "id")
        return json_response(event_view_json(view))

    # --- address monitors ------------------------------------------------------------
    # Bodies are parsed on a worker thread: 100,000 addresses take a second to check, and
    # the loop keeps serving meanwhile.
    async def create_monitor(self, request: web.Request) -> web.Response:
        raw = await request.read()
        monitor = await asyncio.to_thread(
            lambda: monitors.new_monitor(parse.parse_json(raw), self.d.chains.keys(),
                                         new_id("mon"), self.d.clock()))
        await self._endpoint_exists(monitor.endpoint_id)
        await self.d.store.put_monitor(monitor)
        return json_response(monitor_json(monitor, self.d.chains), status=201)

    async def _endpoint_exists(self, endpoint_id: str) -> None:
        if await self.d.store.get_endpoint(endpoint_id) is None:
            raise parse.BadRequest(422, "no such endpoint", "endpoint_id")

    async def _monitor(self, request: web.Request) -> Monitor:
        monitor = await self.d.store.get_monitor(request.match_info["id"])
        if monitor is None:
            raise parse.BadRequest(404, "no such monitor", "id")
        return monitor

    async def list_monitors(self, request: web.Request) -> web.Response:
        chain = monitors.list_query(request.query)
        return json_response([monitor_json(m, self.d.chains)
                              for m in await self.d.store.list_monitors(chain)])

    async def get_monitor(self, request: web.Request) -> web.Response:
        monitor = await self._monitor(request)
        return json_response(monitor_json(monitor, self.d.chains, with_addresses=True))

    async def patch_monitor(self, request: web.Request) -> web.Response:
        raw = await request.read()
        changes = await asyncio.to_thread(
            lambda: monitors.monitor_changes(parse.parse_json(raw)))
        if changes.endpoint_id is not None:
            await self._endpoint_exists(changes.endpoint_id)
        async with self._monitor_writes:
            for attempt in range(PATCH_TRIES):
                monitor = changes.apply(await self._monitor(request))
                # over what was read, or not at all: another process may be changing it
                if await self.d.store.replace_monitor(monitor):
                    return json_response(monitor_json(monitor, self.d.chains))
                await asyncio.sleep(random.uniform(0, 0.01 * (attempt + 1)))
        raise parse.BadRequest(409, "the monitor kept changing while this change was made; "
                                    "send it again", "id")

    async def delete_monitor(self, request: web.Request) -> web.Response:
        async with self._monitor_writes:
            if not await self.d.store.delete_monitor(request.match_info["id"]):
                raise parse.BadRequest(404, "no such monitor", "id")
        return web.Response(status=204)

    async def monitor_events(self, request: web.Request) -> web.Response:
        query = monitors.history_query(request.query)
        found = await self.d.store.monitor_events(request.match_info["id"], query.tx_hash,
                                                  query.address, query.limit)
        if not found:  # no history, or no monitor: only then is the monitor read
            await self._monitor(request)
        return json_response([monitor_event_json(e) for e in found])
