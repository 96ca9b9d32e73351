"""A real `crypitor service` process, a recording webhook sink and a load generator, for
the tests that kill, restart and share services."""

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
from tests.support.web import serve

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
    async with serve(app) as base:
        s.url = f"{base}/hook"
        yield s


class ServiceProcess:
    def __init__(self, tmp_path: Path, queue: str = "sqlite", extra: str = "",
                 drain: str = "0s") -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.config = tmp_path / "config.toml"
        self.config.write_text(
            f'[monitor]\ndata_dir = "{tmp_path / "data"}"\n'
            f'[service]\nlisten = "127.0.0.1:{self.port}"\napi_keys = ["{KEY}"]\n'
            f'queue = "{queue}"\nshutdown_drain = "{drain}"\n'
            'allow_private_targets = true\nretry_schedule = ["200ms", "200ms", "200ms"]\n'
            + extra)
        self.proc: subprocess.Popen[bytes] | None = None
        # the log goes to a file: a pipe nobody reads until the stop fills up (64 KB) under
        # a chatty run and blocks the service mid-test
        self.log = tmp_path / "service.log"

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitor", "service", "-c", str(self.config)],
                stdout=subprocess.DEVNULL, stderr=log)
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
        self.proc.wait(timeout=60)
        return self.proc.returncode, self.log.read_text(errors="replace")


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
