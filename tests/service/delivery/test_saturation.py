"""crypitor_webhook_saturation: the larger of the delivery slots held and one core used,
over a window; and on a running service, a slow endpoint raises it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from monitor.config import ServiceSection
from service.app import Service
from service.delivery import Saturation
from tests.support.net import free_port
from tests.support.web import serve

KEY = "saturation-key"
AUTH = {"Authorization": f"Bearer {KEY}"}

pytestmark = pytest.mark.timeout(60)


class Fake:
    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.held = 0.0
        self.published: list[float] = []

    def tick(self, seconds: float, cpu_share: float, held: float) -> None:
        self.wall += seconds
        self.cpu += seconds * cpu_share
        self.held = held


def test_the_larger_of_slots_and_cpu_averaged_over_the_window() -> None:
    f = Fake()
    s = Saturation(lambda: f.held, f.published.append, window=4.0, every=1.0,
                   cpu=lambda: f.cpu, monotonic=lambda: f.wall)
    assert s.sample() == 0.0  # one sample: no CPU interval yet, nothing held
    for _ in range(4):
        f.tick(1.0, cpu_share=0.3, held=0.5)
        s.sample()
    assert f.published[-1] == pytest.approx(0.5)  # slots: the endpoints are slow
    for _ in range(4):
        f.tick(1.0, cpu_share=0.9, held=0.1)
        s.sample()
    assert f.published[-1] == pytest.approx(0.9)  # CPU: the core is busy
    for _ in range(4):
        f.tick(1.0, cpu_share=1.7, held=0.0)  # threads beside the loop: clamped
        s.sample()
    assert f.published[-1] == 1.0
    for _ in range(5):  # the window forgets
        f.tick(1.0, cpu_share=0.0, held=0.0)
        s.sample()
    assert f.published[-1] == 0.0
    assert all(0.0 <= v <= 1.0 for v in f.published)


async def test_a_stuck_endpoint_raises_a_running_services_saturation(tmp_path: Path) -> None:
    """Under load the gauge on /metrics rises from 0. Deliveries held by an endpoint that
    does not answer take some of the process's slots: its lane's 10 in flight and what
    waits briefly behind them (pacing puts the rest off, so one slow customer cannot
    saturate a process)."""
    release = asyncio.Event()

    async def stuck(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", stuck)
    listen = f"127.0.0.1:{free_port()}"
    async with serve(app) as base:
        svc = Service(ServiceSection(listen=listen, api_keys=(KEY,), allow_private_targets=True,
                                     request_timeout=30.0), tmp_path)
        await svc.start()
        try:
            async with aiohttp.ClientSession(headers=AUTH) as http:
                async with http.post(f"http://{listen}/v1/endpoints",
                                     json={"url": f"{base}/hook"}) as resp:
                    assert resp.status == 201
                assert await saturation(http, listen) == 0.0
                async with http.post(f"http://{listen}/v1/events/batch",
                                     json=[{"type": "t", "data": i} for i in range(300)]) as resp:
                    assert resp.status == 202
                async with asyncio.timeout(30):
                    while (value := await saturation(http, listen)) == 0.0:
                        await asyncio.sleep(0.2)
                assert 0.0 < value <= 1.0
                assert svc.dispatcher is not None
                async with asyncio.timeout(30):
                    while svc.dispatcher.held_share < 10 / 512:
                        await asyncio.sleep(0.1)
                assert svc.dispatcher.held_share < 0.5
        finally:
            release.set()
            await svc.stop()


async def saturation(http: aiohttp.ClientSession, listen: str) -> float:
    async with http.get(f"http://{listen}/metrics") as resp:
        text = await resp.text()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("crypitor_webhook_saturation ")]
    return float(line.split()[1])
