"""The service's HTTP API on aiohttp: endpoints, events, replay, address monitors and their
history, health, metrics, OpenAPI.

`/v1/*` needs `Authorization: Bearer <key>` (compared in constant time against every key;
an address sending too many wrong keys is answered 429, `core.httpserver.AuthThrottle`).
Errors are JSON `{"error", "field"}`; a client can make a request fail, never a worker.
An event is answered 202 only after the store made it durable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import generate_latest

from core.httpserver import FRONT, AuthThrottle, bearer_matches
from service import NotReplicated, StoreError
from service.api import parsing as parse
from service.api.base import ApiDeps, error, json_response
from service.api.monitor_routes import MonitorRoutes
from service.api.openapi import OPENAPI
from service.api.views import endpoint_json, event_view_json
from service.models import Endpoint, new_id

__all__ = ["ApiDeps", "ServiceApi"]

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_REQUEST = parse.MAX_REQUEST


class ServiceApi:
    def __init__(self, deps: ApiDeps, throttle: AuthThrottle | None = None) -> None:
        self.d = deps
        self._keys = [k.encode() for k in deps.api_keys]
        self._throttle = throttle or AuthThrottle()

    def set_api_keys(self, keys: Sequence[str]) -> None:
        """Accept `keys` from the next request on (a key rotation); no connection drops."""
        self._keys = [k.encode() for k in keys]

    def app(self) -> web.Application:
        # no middleware: on the ingest hot path each layer costs coroutine calls, so the
        # guard is the front the server runs around routing and handler (FRONT)
        app = web.Application(client_max_size=MAX_REQUEST)
        app[FRONT] = self._guard
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
        MonitorRoutes(self.d).add_to(r)
        return app

    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Authentication for /v1/*, then the handler with every error made JSON (routing's
        404 and 405 included)."""
        try:
            if request.path.startswith("/v1/"):
                refused = self._refuse(request)
                if refused is not None:
                    return refused
            return await handler(request)
        except parse.BadRequest as exc:
            return error(exc.status, exc.message, exc.field)
        except web.HTTPRequestEntityTooLarge:
            return error(413, f"body is larger than {MAX_REQUEST // 2**20} MB", "body")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            answer = error(exc.status, exc.reason)
            if "Allow" in exc.headers:  # a 405 says which methods the path takes (RFC 9110)
                answer.headers["Allow"] = exc.headers["Allow"]
            return answer
        except NotReplicated:
            log.warning("no replica acknowledged %s %s in time", request.method, request.path)
            return error(503, "no Redis replica acknowledged the write in time, so it is not "
                         "acknowledged; retry with the same idempotency_key")
        except StoreError:
            log.exception("store failed serving %s %s", request.method, request.path)
            return error(503, "the store is unavailable; nothing was accepted")
        except ConnectionError:  # the client hung up: nobody to answer, nothing to trace
            log.debug("client hung up during %s %s", request.method, request.path)
            self.d.metrics.disconnects.inc()
            return error(400, "the client closed the connection", "body")
        except Exception:  # the log keeps the trace; the client gets none
            log.exception("error serving %s %s", request.method, request.path)
            return error(500, "internal error")

    def _refuse(self, request: web.Request) -> web.Response | None:
        """None for a valid key (never throttled); else 401, or 429 once the address has
        sent too many wrong keys."""
        header = request.headers.get("Authorization", "")
        if bearer_matches(header, self._keys):  # the common case, without the peer's address
            return None
        wait = self._throttle.refuse(header, self._keys, request.remote or "")
        if wait is None:
            return None
        if wait:
            self.d.metrics.auth_throttled.inc()
            response = error(429, "too many wrong API keys from this address; retry later",
                             "Authorization")
            response.headers["Retry-After"] = str(wait)
            return response
        return error(401, "missing or wrong API key", "Authorization")

    # --- health ----------------------------------------------------------------------
    async def healthz(self, _r: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(self, _r: web.Request) -> web.Response:
        down = self.d.down()
        if down:  # a crashed dispatcher accepts events it would not deliver
            return json_response({"status": "task down: " + ", ".join(down)}, status=503)
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
        raw = await request.read()
        f = parse.endpoint_fields(parse.parse_json(raw, parse.MAX_SMALL_BODY), True,
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
        raw = await request.read()
        f = parse.endpoint_fields(parse.parse_json(raw, parse.MAX_SMALL_BODY), False,
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
        endpoint_id = request.match_info["id"]
        # a monitor's events would go nowhere, silently: the customer decides what first
        users = await self.d.store.endpoint_monitors(endpoint_id, 6)
        if users:
            named = ", ".join(users[:5]) + (" and more" if len(users) > 5 else "")
            raise parse.BadRequest(409, f"monitors send their events to this endpoint ({named});"
                                        " delete them or move them to another endpoint first",
                                   "id")
        if not await self.d.store.delete_endpoint(endpoint_id):
            raise parse.BadRequest(404, "no such endpoint", "id")
        return web.Response(status=204)

    async def replay(self, request: web.Request) -> web.Response:
        raw = await request.read()
        since, until = parse.time_window(parse.parse_json(raw, parse.MAX_SMALL_BODY)
                                         if raw.strip() else None)
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
        raw = await request.read()
        # a large one on a worker thread: the loop keeps serving while it is checked (and,
        # when it is refused, while the field at fault is looked for)
        events = (parse.batch(raw) if len(raw) <= parse.MAX_EVENT_BYTES
                  else await asyncio.to_thread(parse.batch, raw))
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
