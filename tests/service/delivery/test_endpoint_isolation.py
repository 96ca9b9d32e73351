"""One customer's slow endpoint must not hold up everyone else's webhooks: with a backlog
for an endpoint that takes a second per request, another endpoint's events still go out
at once (once per event), and the slow one's backlog is delivered completely, once each.
On both queue backends, through the real service."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from monitor.config import ServiceSection
from service.app import Service
from tests.support.net import free_port
from tests.support.stores import StoreFactory
from tests.support.web import serve

pytestmark = pytest.mark.timeout(120)
KEY = "isolation-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass
class Sinks:
    base: str = ""
    slow_delay: float = 1.0
    stuck: asyncio.Event | None = None  # when set: the slow sink answers nothing until set
    waiting: int = 0  # requests the slow sink holds
    got: dict[str, Counter[int]] = field(default_factory=lambda: {"slow": Counter(),
                                                                  "fast": Counter()})

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = json.loads(await request.read())
        if name == "slow":
            self.waiting += 1
            if self.stuck is not None:
                await self.stuck.wait()
            await asyncio.sleep(self.slow_delay)
            self.waiting -= 1
        self.got[name][body["data"]["i"]] += 1
        return web.Response(status=204)


@pytest.fixture
async def sinks() -> AsyncIterator[Sinks]:
    s = Sinks()
    app = web.Application()
    app.router.add_post("/{name}", s.handle)
    async with serve(app) as base:
        s.base = base
        yield s


@pytest.fixture
async def service(tmp_path: Path, store_factory: StoreFactory) -> AsyncIterator[str]:
    listen = f"127.0.0.1:{free_port()}"
    svc = Service(ServiceSection(listen=listen, api_keys=(KEY,), allow_private_targets=True,
                                 request_timeout=30.0, max_in_flight_per_endpoint=5),
                  tmp_path, store=store_factory())
    await svc.start()
    try:
        yield f"http://{listen}"
    finally:
        await svc.stop()


async def post(http: aiohttp.ClientSession, url: str, body: Any) -> Any:
    async with http.post(url, json=body, headers=AUTH) as resp:
        assert resp.status in (201, 202), await resp.text()
        return await resp.json()


async def test_a_stuck_endpoints_backlog_does_not_hold_up_another_endpoint(
        service: str, sinks: Sinks) -> None:
    """The slow endpoint answers nothing until the other endpoint has all its events: if
    its backlog held the dispatcher's claims or the queue order, they would never come."""
    sinks.stuck, sinks.slow_delay = asyncio.Event(), 0.0
    async with aiohttp.ClientSession() as http:
        for name in ("slow", "fast"):
            await post(http, f"{service}/v1/endpoints",
                       {"url": f"{sinks.base}/{name}", "event_types": [name]})
        await post(http, f"{service}/v1/events/batch",
                   [{"type": "slow", "data": {"i": i}} for i in range(1000)])
        async with asyncio.timeout(30):
            while sinks.waiting < 5:  # its 5 at a time are in flight, stuck
                await asyncio.sleep(0.05)
        for i in range(20):
            await post(http, f"{service}/v1/events", {"type": "fast", "data": {"i": i}})
        async with asyncio.timeout(30):
            while len(sinks.got["fast"]) < 20:
                await asyncio.sleep(0.05)
        assert sinks.got["fast"] == Counter(range(20))  # each once
        assert not sinks.got["slow"] and sinks.waiting == 5
        async with http.get(f"{service}/metrics") as resp:
            assert "crypitor_webhook_busy_endpoints 1.0" in await resp.text()
        sinks.stuck.set()  # and the stuck one goes on from where it was
        async with asyncio.timeout(30):
            while len(sinks.got["slow"]) < 20:
                await asyncio.sleep(0.05)


async def test_work_put_off_for_a_busy_endpoint_is_all_delivered_once(
        service: str, sinks: Sinks) -> None:
    sinks.slow_delay = 0.2  # 25 per second with 5 at a time: most of 150 wait their turn
    async with aiohttp.ClientSession() as http:
        await post(http, f"{service}/v1/endpoints",
                   {"url": f"{sinks.base}/slow", "event_types": ["slow"]})
        for start in range(0, 150, 50):
            await post(http, f"{service}/v1/events/batch",
                       [{"type": "slow", "data": {"i": i}} for i in range(start, start + 50)])
        async with asyncio.timeout(90):
            while len(sinks.got["slow"]) < 150:
                await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # anything sent twice would have arrived by now
    assert sinks.got["slow"] == Counter(range(150))
