"""A real monitor for the status page tests: local HTTP targets (one whose answer the test
changes), an unreachable one, a maintenance window, `[status_page]` on a second listener."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

from monitor.app import Runtime
from monitor.config import load
from tests.support.net import free_port
from tests.support.web import serve

KEY = "test-monitor-key"
SECRET = "s3cret-token"  # in a target's URL: never on a public page


@dataclass
class Flaky:
    status: int = 200


@dataclass
class Monitor:
    runtime: Runtime
    flaky: Flaky
    path: Path
    status_listen: str
    closed_port: int
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def main(self) -> str:
        return f"http://{self.runtime.config.monitor.listen}"

    @property
    def public(self) -> str:
        return f"http://{self.status_listen}"


def config_text(base: str, data: Path, listen: str, status_listen: str, closed_port: int,
                status_page: str) -> str:
    start = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
    return f"""
[monitor]
listen = "{listen}"
data_dir = "{data}"
api_keys = ["{KEY}"]
[service]
enabled = false
[status_page]
listen = "{status_listen}"
{status_page}
[[targets]]
name = "eth-main"
type = "http"
url = "{base}/flaky?token={SECRET}"
interval = "200ms"
timeout = "150ms"
labels = {{ team = "chain" }}
[[targets]]
name = "web"
type = "http"
url = "{base}/ok"
interval = "200ms"
timeout = "150ms"
labels = {{ team = "web" }}
[[targets]]
name = "lonely"
type = "tcp"
url = "tcp://127.0.0.1:{closed_port}"
interval = "200ms"
timeout = "150ms"
[alerts]
[[alerts.maintenance]]
name = "web-upgrade"
match = {{ team = "web" }}
start = "{start.isoformat()}"
duration = "1h"
"""


@contextlib.asynccontextmanager
async def running(tmp_path: Path, status_page: str = "") -> AsyncIterator[Monitor]:
    flaky = Flaky()

    async def flaky_handler(_r: web.Request) -> web.Response:
        return web.Response(status=flaky.status, text="ok" if flaky.status == 200 else "no")

    async def ok(_r: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/flaky", flaky_handler)
    app.router.add_get("/ok", ok)
    async with serve(app) as base:
        status_listen = f"127.0.0.1:{free_port()}"
        closed = free_port()
        path = tmp_path / "config.toml"
        path.write_text(config_text(base, tmp_path / "data", f"127.0.0.1:{free_port()}",
                                    status_listen, closed, status_page))
        runtime = Runtime(load(path), env={})
        await runtime.start()
        try:
            yield Monitor(runtime, flaky, path, status_listen, closed)
        finally:
            await runtime.stop()


async def fetch(http: aiohttp.ClientSession, url: str,
                method: str = "GET") -> tuple[int, dict[str, str], str]:
    async with http.request(method, url) as resp:
        return resp.status, dict(resp.headers), await resp.text()


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 20.0) -> None:
    """Ask `check` every 50 ms until it says yes; a failure after `seconds`."""
    async with asyncio.timeout(seconds):
        while not await check():
            await asyncio.sleep(0.05)
