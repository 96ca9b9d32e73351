"""Endpoint isolation: how long a healthy endpoint's webhooks take while another customer's
endpoint is slow (2 s per request) with a backlog of 3,000 events, against the same
service with no slow endpoint at all. The service runs in this process, both sinks are
local aiohttp servers.

    .venv/bin/python -m bench.isolation [--backlog 3000] [--events 40]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from monitor.config import ServiceSection
from service.app import Service
from tests.support.net import free_port

KEY = "bench-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SLOW = 2.0  # seconds the slow endpoint takes per request


async def run(backlog: int, events: int) -> list[float]:
    """Seconds from each healthy event's 202 to its arrival at the healthy sink."""
    arrived: dict[int, float] = {}

    async def slow(_request: web.Request) -> web.Response:
        await asyncio.sleep(SLOW)
        return web.Response(status=204)

    async def fast(request: web.Request) -> web.Response:
        arrived[(await request.json())["data"]["i"]] = time.monotonic()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/slow", slow)
    app.router.add_post("/fast", fast)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    sink_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", sink_port).start()
    listen = f"127.0.0.1:{free_port()}"
    sent: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-iso-") as tmp:
        svc = Service(ServiceSection(listen=listen, api_keys=(KEY,), allow_private_targets=True,
                                     request_timeout=5.0), Path(tmp))
        await svc.start()
        try:
            async with aiohttp.ClientSession(headers=AUTH) as http:
                for name in ("slow", "fast"):
                    async with http.post(f"http://{listen}/v1/endpoints", json={
                            "url": f"http://127.0.0.1:{sink_port}/{name}",
                            "event_types": [name]}) as resp:
                        assert resp.status == 201, await resp.text()
                for start in range(0, backlog, 1000):
                    batch = [{"type": "slow", "data": {"i": i}}
                             for i in range(start, min(backlog, start + 1000))]
                    async with http.post(f"http://{listen}/v1/events/batch",
                                         json=batch) as resp:
                        assert resp.status == 202, await resp.text()
                await asyncio.sleep(1.0 if backlog else 0.0)
                for i in range(events):
                    async with http.post(f"http://{listen}/v1/events",
                                         json={"type": "fast", "data": {"i": i}}) as resp:
                        assert resp.status == 202, await resp.text()
                        sent[i] = time.monotonic()
                    await asyncio.sleep(0.25)
                deadline = time.monotonic() + 120
                while len(arrived) < events and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
        finally:
            await svc.stop()
            await runner.cleanup()
    return sorted(arrived[i] - sent[i] for i in arrived)


def describe(label: str, lat: list[float], events: int) -> str:
    if not lat:
        return f"  {label:44} none of {events} arrived within 120 s"
    return (f"  {label:44} {len(lat)}/{events} arrived; median {statistics.median(lat) * 1e3:,.1f}"
            f" ms, max {lat[-1] * 1e3:,.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backlog", type=int, default=3000)
    ap.add_argument("--events", type=int, default=40)
    args = ap.parse_args()
    alone = asyncio.run(run(0, args.events))
    beside = asyncio.run(run(args.backlog, args.events))
    print("\nA healthy endpoint's webhooks, one every 0.25 s (acceptance to arrival):")
    print(describe("alone", alone, args.events))
    print(describe(f"beside a {SLOW:g} s endpoint with {args.backlog:,} waiting", beside,
                   args.events))
    if alone and beside:
        ratio = statistics.median(beside) / statistics.median(alone)
        print(f"  median beside / alone: {ratio:.1f}x")


if __name__ == "__main__":
    main()
