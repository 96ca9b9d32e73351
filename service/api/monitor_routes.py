"""The address-monitor routes of the service API: `/v1/monitors` (create, list, get, patch,
delete) and `/v1/monitors/{id}/events` (the history), mounted by `service.api.ServiceApi`.
"""

from __future__ import annotations

import asyncio
import random

from aiohttp import web

from service.api import monitor_parsing as monitors
from service.api import parsing as parse
from service.api.base import ApiDeps, json_response
from service.api.views import monitor_event_json, monitor_json
from service.models import Monitor, new_id

PATCH_TRIES = 10  # reads of a monitor that other processes keep changing, then 409


class MonitorRoutes:
    def __init__(self, deps: ApiDeps) -> None:
        self.d = deps
        # PATCH reads, changes and writes back a whole monitor, written only over what it
        # read (`replace_monitor`); one at a time in this process, so that only PATCHes of
        # other processes sharing the store make it read again
        self._monitor_writes = asyncio.Lock()

    def add_to(self, r: web.UrlDispatcher) -> None:
        r.add_post("/v1/monitors", self.create_monitor)
        r.add_get("/v1/monitors", self.list_monitors)
        r.add_get("/v1/monitors/{id}", self.get_monitor)
        r.add_patch("/v1/monitors/{id}", self.patch_monitor)
        r.add_delete("/v1/monitors/{id}", self.delete_monitor)
        r.add_get("/v1/monitors/{id}/events", self.monitor_events)

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
        try:
            found = await self.d.store.monitor_events(request.match_info["id"], query.tx_hash,
                                                      query.address, query.limit, query.before)
        except ValueError as exc:
            await self._monitor(request)  # no monitor: 404 rather than a bad `before`
            raise parse.BadRequest(422, str(exc), "before") from None
        if not found:  # no history, or no monitor: only then is the monitor read
            await self._monitor(request)
        response = json_response([monitor_event_json(e) for e in found])
        if len(found) == query.limit:  # maybe more: where the next page starts
            following = request.rel_url.update_query(before=found[-1].event_id)
            response.headers["Link"] = f'<{following}>; rel="next"'
        return response
