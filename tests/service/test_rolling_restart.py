"""A rolling restart behind a real load balancer: HAProxy, which learns that a server stops
only from its active health checks on `/readyz` and retries nothing, in front of two
`crypitor service` processes on one Redis. Under a steady event load each process is SIGTERMed
and restarted in turn. With the drain no request fails and every accepted event is delivered;
without it (`shutdown_drain = "0s"`) requests fail, so the test is seen to be able to fail."""

from __future__ import annotations

import asyncio
import csv
import io
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis

from tests.support.net import free_port
from tests.support.redis_server import RedisServer
from tests.support.service_proc import AUTH, ServiceProcess, Sink, wait_delivered
from tests.support.tools import haproxy

RATE = 100  # requests per second, sent on a fixed schedule whatever the answers take
MAX_REQUESTS = 6000  # the load's bound (a minute at RATE); the restarts end it sooner
ROUNDS = 2  # each process is restarted this many times
CHECK_INTER = "300ms"  # HAProxy's health-check interval; the drain below is several of these
DRAIN = "2s"


@dataclass
class Balancer:
    """HAProxy in the foreground: `port` balances round-robin over the servers, `stats`
    serves its view of them as CSV."""

    config: Path
    port: int = field(default_factory=free_port)
    stats: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, servers: list[int]) -> None:
        lines = "\n".join(f"  server s{i} 127.0.0.1:{port} check"
                          for i, port in enumerate(servers))
        self.config.write_text(f"""
global
  maxconn 2000
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  retries 0
  option http-server-close
frontend api
  bind 127.0.0.1:{self.port}
  default_backend services
backend services
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server inter {CHECK_INTER} fall 1 rise 1
{lines}
listen stats
  bind 127.0.0.1:{self.stats}
  stats enable
  stats uri /stats
""")
        self.proc = subprocess.Popen([haproxy(), "-db", "-f", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    async def status(self, http: aiohttp.ClientSession) -> dict[str, str]:
        """Each server's state as HAProxy sees it: UP, DOWN ..."""
        async with http.get(f"http://127.0.0.1:{self.stats}/stats;csv") as resp:
            text = (await resp.text()).lstrip("# ")
        return {row["svname"]: row["status"] for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] == "services" and row["svname"] not in ("BACKEND", "FRONTEND")}

    async def until(self, http: aiohttp.ClientSession, server: int, state: str) -> None:
        while True:
            try:
                if (await self.status(http)).get(f"s{server}", "").startswith(state):
                    return
            except aiohttp.ClientError:
                pass  # still starting
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.communicate(timeout=10)


@dataclass
class Load:
    accepted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


async def steady_load(url: str, load: Load, done: asyncio.Event) -> None:
    """`RATE` events a second, each on its own schedule, until `done` or `MAX_REQUESTS`."""
    loop = asyncio.get_running_loop()

    async def one(http: aiohttp.ClientSession, i: int) -> None:
        try:
            async with http.post(url, headers=AUTH, json={"type": "t", "data": {"i": i}}) as r:
                if r.status == 202:
                    load.accepted.append((await r.json())["id"])
                else:
                    load.failed.append(f"{r.status} {await r.text()}"[:200])
        except aiohttp.ClientError as exc:
            load.failed.append(repr(exc))

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=0)) as http:
        sent: list[asyncio.Task[None]] = []
        start = loop.time()
        for i in range(MAX_REQUESTS):
            if done.is_set():
                break
            sent.append(asyncio.create_task(one(http, i)))
            await asyncio.sleep(max(0.0, start + (i + 1) / RATE - loop.time()))
        await asyncio.gather(*sent)


@pytest.fixture
async def queue(redis_server: RedisServer) -> AsyncIterator[str]:
    url = redis_server.url.rsplit("/", 1)[0] + "/10"  # a database of its own (7-9: others)
    client = aioredis.Redis.from_url(url)
    await client.flushdb()
    try:
        yield url
    finally:
        await client.flushdb()
        await client.aclose()


async def rolling_restart(tmp_path: Path, sink: Sink, queue: str, drain: str) -> Load:
    services = [ServiceProcess(tmp_path / name, queue, drain=drain) for name in ("a", "b")]
    balancer = Balancer(tmp_path / "haproxy.cfg")
    load, done = Load(), asyncio.Event()
    try:
        for service in services:
            await service.start()
        balancer.start([s.port for s in services])
        async with aiohttp.ClientSession() as http:
            for i in range(len(services)):
                await balancer.until(http, i, "UP")
            async with http.post(f"http://127.0.0.1:{balancer.port}/v1/endpoints",
                                 headers=AUTH, json={"url": sink.url}) as resp:
                assert resp.status == 201
            loader = asyncio.create_task(
                steady_load(f"http://127.0.0.1:{balancer.port}/v1/events", load, done))
            for _ in range(ROUNDS):
                for i, service in enumerate(services):
                    code, err = await asyncio.to_thread(service.stop, signal.SIGTERM)
                    assert code == 0, err
                    await service.start()
                    await balancer.until(http, i, "UP")  # in the pool again, then the next
            done.set()
            await loader
        await wait_delivered(sink, load.accepted, 60)
    finally:
        done.set()
        balancer.stop()
        for service in services:
            if service.proc is not None and service.proc.poll() is None:
                await asyncio.to_thread(service.stop, signal.SIGTERM)
    duplicates = sum(len(ids) - 1 for ids in sink.by_event.values())
    print(f"\nrolling restart, shutdown_drain={drain}: {len(load.accepted)} accepted, "
          f"{len(load.failed)} failed requests, {duplicates} duplicate deliveries"
          + (f"; first failure: {load.failed[0]}" if load.failed else ""))
    return load


@pytest.mark.timeout(90)
async def test_rolling_restart_with_the_drain_fails_no_request(
        tmp_path: Path, sink: Sink, queue: str) -> None:
    load = await rolling_restart(tmp_path, sink, queue, DRAIN)
    assert load.failed == []
    assert set(load.accepted) <= set(sink.by_event)  # every accepted event delivered
    assert all(len(ids) == 1 for ids in sink.by_event.values())  # and once


@pytest.mark.timeout(90)
async def test_rolling_restart_without_the_drain_fails_requests(
        tmp_path: Path, sink: Sink, queue: str) -> None:
    load = await rolling_restart(tmp_path, sink, queue, "0s")
    assert len(load.failed) > 0  # what the drain prevents: the test can fail
    assert set(load.accepted) <= set(sink.by_event)  # yet nothing accepted is lost
