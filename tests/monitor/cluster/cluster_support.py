"""Shared by the cluster probing tests: in-process `Runtime`s on one Redis, and a real HTTP
target server that counts the probes it gets per (target, location from the User-Agent,
grid slot)."""

from __future__ import annotations

import asyncio
import re
import time
import tomllib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from monitor.app import Runtime
from monitor.config import parse
from monitor.runtime import grid_offset, grid_slot
from tests.support.net import free_port

INTERVAL = 1.0
LEASE = 2.0  # a loaded CI machine stalls the loop now and then: a lease outlives that
WAIT = 30.0  # every wait's bound: far beyond what a loaded machine needs
_LOCATION = re.compile(r"\(location=([^)]*)\)")


@dataclass
class Targets:
    """A loopback HTTP server: every GET /<name> is a probe of target <name>."""

    port: int = field(default_factory=free_port)
    hits: list[tuple[str, str, float]] = field(default_factory=list)  # name, location, time
    user_agents: set[str] = field(default_factory=set)
    runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self._hit)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _hit(self, request: web.Request) -> web.Response:
        agent = request.headers.get("User-Agent", "")
        self.user_agents.add(agent)
        found = _LOCATION.search(agent)
        self.hits.append((request.match_info["name"], found.group(1) if found else "",
                          time.time()))
        return web.Response(text="ok")

    def slots(self, since: float = 0.0) -> Counter[tuple[str, str, int]]:
        """Probes per (target, location, slot) that arrived after `since`."""
        return Counter((name, loc, grid_slot(at, grid_offset(name, INTERVAL), INTERVAL))
                       for name, loc, at in self.hits if at > since)


def config_text(data_dir: Path, listen: str, location: str, instance: str, port: int,
                targets: int, eu_only: Sequence[int] = ()) -> str:
    lines = [f'[monitor]\nlisten = "{listen}"\ndata_dir = "{data_dir}"\napi_keys = ["k"]\n'
             f'[service]\nenabled = false\n'
             f'[cluster]\nredis = "env:CLUSTER_REDIS"\nlocation = "{location}"\n'
             f'instance = "{instance}"\nlease = "{LEASE:g}s"\n']
    for i in range(targets):
        lines.append(f'[[targets]]\nname = "t{i}"\ntype = "http"\n'
                     f'url = "http://127.0.0.1:{port}/t{i}"\ninterval = "{INTERVAL:g}s"\n'
                     f'timeout = "0.5s"\n')
        if i in eu_only:
            lines.append('locations = ["eu"]\n')
    return "".join(lines)


def runtime(tmp_path: Path, redis_url: str, prefix: str, location: str, instance: str,
            targets: Targets, count: int, eu_only: Sequence[int] = ()) -> Runtime:
    listen = f"127.0.0.1:{free_port()}"
    data = tmp_path / instance
    text = config_text(data, listen, location, instance, targets.port, count, eu_only)
    config = parse(tomllib.loads(text), tmp_path / f"{instance}.toml")
    return Runtime(config, env={"CLUSTER_REDIS": redis_url}, cluster_prefix=prefix)


async def until(check: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Poll `check` until true; fails after WAIT seconds."""
    try:
        async with asyncio.timeout(WAIT):
            while True:
                result = check()
                if not isinstance(result, bool):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {WAIT:g}s: {what}") from None


def peers_are(rt: Runtime, expected: set[str]) -> bool:
    return rt.ownership is not None and set(rt.ownership.peers) == expected


async def kill(rt: Runtime) -> None:
    """As `kill -9` does to the cluster: the instance stops without leaving (its member entry
    stays until its lease runs out), while its tasks and connections still end here."""
    assert rt.membership is not None

    async def stay() -> None:
        return None

    rt.membership.leave = stay  # type: ignore[method-assign]
    await rt.stop()
