"""No loss across `kill -9` and SIGTERM: a real `crypitor service` process under load is
killed mid-stream, restarted on the same data, and every event that got a 202 must reach
the sink at least once, always under the same webhook-id. Duplicates are counted."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.support.net import free_port

KEY = "crash-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass
class Sink:
    url: str = ""
    delay: float = 0.0
    by_event: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        await asyncio.sleep(self.delay)  # keeps deliveries in flight when the kill comes
        self.by_event[body["id"]].append(request.headers["webhook-id"])
        return web.Response(status=200)


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = Sink()
    app = web.Application()
    app.router.add_post("/hook", s.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    s.url = f"http://127.0.0.1:{port}/hook"
    yield s
    await runner.cleanup()


class ServiceProcess:
    def __init__(self, tmp_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = tmp_path / "config.toml"
        self.config.write_text(
            f'[monitor]\ndata_dir = "{tmp_path / "data"}"\n'
            f'[service]\nlisten = "127.0.0.1:{self.port}"\napi_keys = ["{KEY}"]\n'
            'allow_private_targets = true\nretry_schedule = ["200ms", "200ms", "200ms"]\n')
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "service", "-c", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        async with asyncio.timeout(30), aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(f"{self.base}/readyz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)

    def stop(self, sig: signal.Signals) -> tuple[int, str]:
        assert self.proc is not None
        self.proc.send_signal(sig)
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err.decode()


async def load(base: str, acked: list[str], stop_after: int, limit: float) -> None:
    """Post events from 16 clients until `stop_after` got a 202 or `limit` seconds pass;
    requests cut off by the kill are simply not acknowledged."""
    deadline = asyncio.get_running_loop().time() + limit

    async def client(http: aiohttp.ClientSession, n: int) -> None:
        i = 0
        while len(acked) < stop_after and asyncio.get_running_loop().time() < deadline:
            i += 1
            try:
                async with http.post(f"{base}/v1/events", headers=AUTH,
                                     json={"type": "t", "data": {"c": n, "i": i}}) as resp:
                    if resp.status == 202:
                        acked.append((await resp.json())["id"])
            except aiohttp.ClientError:
                return

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(client(http, n) for n in range(16)))


async def wait_delivered(sink: Sink, acked: list[str], seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while not set(acked) <= set(sink.by_event):
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_nothing_acknowledged_is_lost(tmp_path: Path, sink: Sink,
                                            sig: signal.Signals) -> None:
    sink.delay = 0.05
    service = ServiceProcess(tmp_path)
    await service.start()
    async with aiohttp.ClientSession() as http, http.post(
            f"{service.base}/v1/endpoints", headers=AUTH, json={"url": sink.url}) as resp:
        assert resp.status == 201
    acked: list[str] = []
    loader = asyncio.create_task(load(service.base, acked, stop_after=10_000, limit=20))
    async with asyncio.timeout(30):
        while len(acked) < 300:  # mid-stream: clients still posting, deliveries in flight
            await asyncio.sleep(0.01)
    code, err = await asyncio.to_thread(service.stop, sig)
    await loader
    assert code == (-9 if sig is signal.SIGKILL else 0), err
    assert "Traceback" not in err
    delivered_before = len(sink.by_event)
    await service.start()  # same data_dir: the queue and leases come back
    try:
        await wait_delivered(sink, acked, 60)
    finally:
        service.stop(signal.SIGTERM)
    assert set(acked) <= set(sink.by_event)  # at least once, every acknowledged event
    for event_id in acked:
        assert len(set(sink.by_event[event_id])) == 1  # one webhook-id across copies
    duplicates = sum(len(v) - 1 for v in sink.by_event.values())
    print(f"\n{sig.name}: {len(acked)} acknowledged, {delivered_before} delivered before the "
          f"stop, {duplicates} duplicate deliveries after restart")
    if sig is signal.SIGTERM:  # a graceful stop returns in-flight work instead of redoing it
        assert duplicates == 0
