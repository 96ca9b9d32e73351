"""A monitor cluster of real `crypitor run` processes for the end-to-end tests: one config per
instance ([cluster] on a real redis-server, alerts to the fake Telegram), and an HTTP target
server that tells the probes apart by the location in their User-Agent, so one machine can
play a target that fails from one location only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.support.net import free_port
from tests.support.tools import ROOT
from tests.support.web import serve

MONITOR_KEY = "cluster-test-key"
CHAT = "-100777"
START_WAIT = 60.0  # seconds: a loaded 2-core machine imports the monitor slowly
UA_LOCATION = re.compile(r"\(location=([^)]*)\)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Hit:
    target: str
    location: str  # from the User-Agent; "" when it names none
    at: float  # time.monotonic()


@dataclass
class TargetServer:
    """Answers `/t/<name>` with 200, or 503 for the (target, location) pairs made to fail;
    records every request."""

    url: str = ""
    hits: list[Hit] = field(default_factory=list)
    failing: dict[str, frozenset[str] | None] = field(default_factory=dict)  # None: everywhere

    def fail(self, name: str, locations: Iterable[str] | None = None) -> None:
        self.failing[name] = None if locations is None else frozenset(locations)

    def recover(self, name: str) -> None:
        self.failing.pop(name, None)

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = UA_LOCATION.search(request.headers.get("User-Agent", ""))
        location = found.group(1) if found else ""
        self.hits.append(Hit(name, location, time.monotonic()))
        where = self.failing.get(name, frozenset())
        if name in self.failing and (where is None or location in where):
            return web.Response(status=503, text="down")
        return web.Response(text="ok")

    def times(self, name: str, location: str, since: float = 0.0,
              until: float = float("inf")) -> list[float]:
        return [h.at for h in self.hits
                if h.target == name and h.location == location and since <= h.at < until]


@contextlib.asynccontextmanager
async def serve_targets() -> AsyncIterator[TargetServer]:
    server = TargetServer()
    app = web.Application()
    app.router.add_get("/t/{name}", server.handle)
    async with serve(app) as url:
        server.url = url
        yield server


@dataclass(frozen=True)
class ClusterSpec:
    """What every instance's config shares; alerts are the built-in rules (TargetDown: three
    failed probes in a row)."""

    redis_url: str
    targets: tuple[str, ...]
    target_url: str  # the TargetServer's base URL
    telegram_url: str
    interval: float = 2.0
    lease: float = 3.0
    quorum: int = 1
    locations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # per target

    def config(self, data_dir: Path, listen: str, location: str, instance: str) -> str:
        lines = [
            "[monitor]", f'listen = "{listen}"', f'data_dir = "{data_dir}"',
            f'api_keys = ["{MONITOR_KEY}"]',
            "[service]", "enabled = false",
            "[cluster]", f'redis = "{self.redis_url}"', f'location = "{location}"',
            f'instance = "{instance}"', f"quorum = {self.quorum}", f'lease = "{self.lease}s"',
            "[alerts.route]", 'group_wait = "0s"', 'group_interval = "1s"',
            'repeat_interval = "1h"',
            "[[alerts.receivers]]", 'name = "oncall"', 'bot_token = "env:TELEGRAM_BOT_TOKEN"',
            f'chat_id = "{CHAT}"', f'api_url = "{self.telegram_url}"',
        ]
        for name in self.targets:
            lines += ["[[targets]]", f'name = "{name}"', 'type = "http"',
                      f'url = "{self.target_url}/t/{name}"', f'interval = "{self.interval}s"',
                      'timeout = "1s"']
            if name in self.locations:
                quoted = ", ".join(f'"{loc}"' for loc in self.locations[name])
                lines.append(f"locations = [{quoted}]")
        return "\n".join(lines) + "\n"


class Instance:
    """One `crypitor run` of the cluster; its log goes to a file (a pipe read only at the end
    would fill up and block the process)."""

    def __init__(self, spec: ClusterSpec, root: Path, location: str, name: str,
                 token: str) -> None:
        self.location, self.name = location, name
        self.listen = f"127.0.0.1:{free_port()}"
        self.base = f"http://{self.listen}"
        directory = root / name
        directory.mkdir(parents=True, exist_ok=True)
        self.config = directory / "config.toml"
        self.config.write_text(spec.config(directory / "data", self.listen, location, name))
        self.log = directory / "crypitor.log"
        self._token = token
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "TELEGRAM_BOT_TOKEN": self._token, "PYTHONPATH": str(ROOT)}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "-c", str(self.config)], env=env,
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    async def ready(self, http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log_text()
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(f"{self.base}/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} not ready within {START_WAIT}s:\n{self.log_text()}")

    def kill(self) -> None:
        """`kill -9`: no leave, no lease let go, nothing flushed."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""

    async def get(self, http: aiohttp.ClientSession, path: str) -> tuple[int, str]:
        async with http.get(self.base + path,
                            headers={"Authorization": f"Bearer {MONITOR_KEY}"}) as resp:
            return resp.status, await resp.text()

    async def post(self, http: aiohttp.ClientSession, path: str,
                   body: object) -> tuple[int, str]:
        async with http.post(self.base + path, json=body,
                             headers={"Authorization": f"Bearer {MONITOR_KEY}"}) as resp:
            return resp.status, await resp.text()

    async def metric(self, http: aiohttp.ClientSession, name: str,
                     labels: Mapping[str, str] | None = None) -> float | None:
        """The value of the first sample of `name` whose labels include `labels` (in any
        order), None when there is none."""
        status, text = await self.get(http, "/metrics")
        if status != 200:
            return None
        for line in text.splitlines():
            sample, _, value = line.rpartition(" ")
            metric, _, rest = sample.partition("{")
            if metric != name:
                continue
            found = dict(LABEL.findall(rest))
            if all(found.get(k) == v for k, v in (labels or {}).items()):
                return float(value)
        return None


class Cluster:
    """Instances of one spec; `start()` them, `stop_all()` at the end (also after a failure)."""

    def __init__(self, spec: ClusterSpec, root: Path, token: str) -> None:
        self.spec, self.root, self.token = spec, root, token
        self.instances: list[Instance] = []

    def add(self, location: str, name: str) -> Instance:
        instance = Instance(self.spec, self.root, location, name, self.token)
        self.instances.append(instance)
        return instance

    async def start(self, http: aiohttp.ClientSession, *instances: Instance) -> None:
        chosen = instances or tuple(self.instances)
        for instance in chosen:
            instance.start()
        await asyncio.gather(*(i.ready(http) for i in chosen))

    async def leader(self, http: aiohttp.ClientSession, among: Iterable[Instance] = ()
                     ) -> Instance:
        """The instance whose /metrics says it holds the alerting lease (waits for one)."""
        candidates = list(among) or [i for i in self.instances
                                     if i.process is not None and i.process.poll() is None]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for instance in candidates:
                if await instance.metric(http, "crypitor_cluster_alerting_leader") == 1.0:
                    return instance
            await asyncio.sleep(0.2)
        raise AssertionError("no instance became the alerting leader within 30 s")

    def stop_all(self) -> None:
        for instance in self.instances:
            instance.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {i.name}\n{i.log_text()}" for i in self.instances)


async def until(check: object, timeout: float, what: str, every: float = 0.1) -> None:
    """Wait (bounded) until `check()` (sync or async) is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check() if callable(check) else check
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(every)
    raise AssertionError(f"not within {timeout:g}s: {what}")


def gaps(times: list[float]) -> list[float]:
    ordered = sorted(times)
    return [b - a for a, b in itertools.pairwise(ordered)]
