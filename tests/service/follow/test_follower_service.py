"""The whole path as a customer uses it: a chain configured for the service, a monitor
created through the API, a transfer mined on ganache, a signed webhook at the customer's URL."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from monitor.config import ChainFollowConfig, ServiceSection
from service.app import Service
from tests.support import contracts
from tests.support.chain_nodes import GanacheFactory, GanacheNode
from tests.support.net import free_port
from tests.support.redis_server import RedisServer
from tests.support.service_proc import AUTH, ServiceProcess
from tests.support.web import serve

pytestmark = pytest.mark.timeout(90)
KEY = "follower-service-key"


@pytest.fixture(scope="module")
def node(ganache_factory: GanacheFactory) -> GanacheNode:
    (started,) = ganache_factory.start()
    return started


Hits = list[tuple[dict[str, str], bytes]]


@pytest.fixture
async def sink() -> AsyncIterator[tuple[str, Hits]]:
    """A customer's URL that answers 204 and keeps (headers, body) of every delivery."""
    hits: Hits = []

    async def handle(request: web.Request) -> web.Response:
        hits.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    async with serve(app) as base:
        yield f"{base}/hook", hits


async def test_a_monitor_made_through_the_api_gets_signed_transfer_webhooks(
        node: GanacheNode, tmp_path: Path, sink: tuple[str, Hits]) -> None:
    sink_url, hits = sink
    listen = f"127.0.0.1:{free_port()}"
    start = await node.head() + 1
    chain = ChainFollowConfig(node.url, confirmations=2, poll_interval=0.05, chain_id=1337,
                              start_block=start)
    svc = Service(ServiceSection(listen=listen, api_keys=(KEY,), allow_private_targets=True,
                                 chains={"eth": chain}), tmp_path)
    await svc.start()
    auth = {"Authorization": f"Bearer {KEY}"}

    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.request(
                method, f"http://{listen}{path}", json=body, headers=auth) as resp:
            return resp.status, await resp.json()

    try:
        status, endpoint = await call("POST", "/v1/endpoints", {"url": sink_url})
        assert status == 201
        watched = "0x" + secrets.token_hex(20)
        status, monitor = await call("POST", "/v1/monitors", {
            "chain": "eth", "addresses": [watched.upper().replace("0X", "0x")],
            "direction": "in", "endpoint_id": endpoint["id"], "tags": ["vip"]})
        assert status == 201, monitor
        accounts = await contracts.accounts(node)
        tx = await contracts.pay(node, accounts[0], watched, 12345)
        await node.mine(3)
        async with asyncio.timeout(40):
            while len(hits) < 2:
                await asyncio.sleep(0.05)
        bodies = [Webhook(endpoint["secret"]).verify(body, headers) for headers, body in hits]
        assert [b["type"] for b in bodies] == ["transfer.detected", "transfer.confirmed"]
        data = bodies[0]["data"]
        assert (data["tx_hash"], data["to"], data["amount"]) == (tx.lower(), watched, "12345")
        assert (data["monitor_id"], data["tags"], data["category"]) == (
            monitor["id"], ["vip"], "native")
        status, history = await call("GET", f"/v1/monitors/{monitor['id']}/events?tx_hash={tx}")
        assert status == 200 and len(history) == 2
    finally:
        await svc.stop()


async def test_kill_9_of_the_service_while_the_chain_moves_skips_and_repeats_nothing(
        node: GanacheNode, tmp_path: Path, sink: tuple[str, Hits]) -> None:
    """`crypitor service` with a chain follower, SIGKILLed between transfers and restarted:
    every transfer is detected and confirmed, each under one event id (a delivery may be
    repeated under its webhook-id; a second event for the same transfer may not exist)."""
    sink_url, hits = sink
    chain = (f'[service.chains.eth]\nrpc_url = "{node.url}"\nconfirmations = 2\n'
             f'poll_interval = "50ms"\nstart_block = {await node.head() + 1}\n')
    first = ServiceProcess(tmp_path, extra=chain)
    second: ServiceProcess | None = None
    accounts = await contracts.accounts(node)
    watched = "0x" + secrets.token_hex(20)
    paid: list[str] = []
    try:
        await first.start()
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.post(f"{first.base}/v1/endpoints", json={"url": sink_url}) as resp:
                endpoint = await resp.json()
            async with http.post(f"{first.base}/v1/monitors", json={
                    "chain": "eth", "addresses": [watched], "endpoint_id": endpoint["id"]}) as r:
                assert r.status == 201, await r.text()
        for i in range(6):
            paid.append(await contracts.pay(node, accounts[0], watched, 1000 + i))
            await asyncio.sleep(0.05)
        first.stop(signal.SIGKILL)  # mid-stream: the chain goes on without the service
        for i in range(6, 10):
            paid.append(await contracts.pay(node, accounts[0], watched, 1000 + i))
        second = ServiceProcess(tmp_path, extra=chain)
        await second.start()
        for i in range(10, 12):
            paid.append(await contracts.pay(node, accounts[0], watched, 1000 + i))
        await node.mine(3)  # enough blocks on top of the last one to confirm it
        want = {(kind, tx.lower()) for tx in paid
                for kind in ("transfer.detected", "transfer.confirmed")}
        async with asyncio.timeout(60):
            while not want <= {(kind, tx) for kind, tx, _ in seen(hits)}:
                await asyncio.sleep(0.1)
    finally:
        for proc in (first, second):
            if proc is not None and proc.proc is not None and proc.proc.poll() is None:
                proc.stop(signal.SIGTERM)
    ids: dict[tuple[str, str], set[str]] = {}
    for kind, tx, event_id in seen(hits):
        ids.setdefault((kind, tx), set()).add(event_id)
    assert set(ids) == want  # nothing else (no reverted, nothing for other addresses)
    assert all(len(v) == 1 for v in ids.values()), {k: v for k, v in ids.items() if len(v) > 1}


async def test_on_redis_one_process_follows_and_another_takes_over_its_kill_9(
        node: GanacheNode, tmp_path: Path, sink: tuple[str, Hits],
        redis_server: RedisServer) -> None:
    """Two `crypitor service` processes on one Redis queue, both configured for the chain:
    one follows it (the lease on its cursor); SIGKILLed while the chain moves, the other
    takes over from the saved cursor. Every transfer is detected and confirmed under one
    event id each, whichever process saw it."""
    sink_url, hits = sink
    queue = redis_server.url.rsplit("/", 1)[0] + "/8"  # a database of its own
    chain = (f'[service.chains.eth]\nrpc_url = "{node.url}"\nconfirmations = 2\n'
             f'poll_interval = "50ms"\nstart_block = {await node.head() + 1}\n')
    procs = [ServiceProcess(tmp_path / name, queue, extra=chain) for name in "ab"]
    accounts = await contracts.accounts(node)
    watched = "0x" + secrets.token_hex(20)
    paid: list[str] = []
    try:
        await asyncio.gather(*(p.start() for p in procs))
        async with aiohttp.ClientSession(headers=AUTH) as http:
            async with http.post(f"{procs[0].base}/v1/endpoints", json={"url": sink_url}) as r:
                endpoint = await r.json()
            async with http.post(f"{procs[1].base}/v1/monitors", json={
                    "chain": "eth", "addresses": [watched], "endpoint_id": endpoint["id"]}) as r:
                assert r.status == 201, await r.text()
            leader = await one_leader(http, procs)
            for i in range(4):
                paid.append(await contracts.pay(node, accounts[0], watched, 2000 + i))
            async with asyncio.timeout(30):  # the leader is at work before it dies
                while not {tx for kind, tx, _ in seen(hits)} & {paid[0].lower()}:
                    await asyncio.sleep(0.05)
            leader.stop(signal.SIGKILL)
            for i in range(4, 8):  # nobody follows until the dead one's lease runs out
                paid.append(await contracts.pay(node, accounts[0], watched, 2000 + i))
            survivor = next(p for p in procs if p is not leader)
            assert await one_leader(http, [survivor]) is survivor
            for i in range(8, 10):
                paid.append(await contracts.pay(node, accounts[0], watched, 2000 + i))
        await node.mine(3)
        want = {(kind, tx.lower()) for tx in paid
                for kind in ("transfer.detected", "transfer.confirmed")}
        async with asyncio.timeout(60):
            while not want <= {(kind, tx) for kind, tx, _ in seen(hits)}:
                await asyncio.sleep(0.1)
    finally:
        for proc in procs:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.stop(signal.SIGTERM)
    ids: dict[tuple[str, str], set[str]] = {}
    for kind, tx, event_id in seen(hits):
        ids.setdefault((kind, tx), set()).add(event_id)
    assert set(ids) == want
    assert all(len(v) == 1 for v in ids.values()), {k: v for k, v in ids.items() if len(v) > 1}


async def one_leader(http: aiohttp.ClientSession,
                     procs: list[ServiceProcess]) -> ServiceProcess:
    """The one process (of those alive) that follows chain `eth`, once there is exactly one:
    the others report `crypitor_follower_leader` 0."""
    async with asyncio.timeout(30):  # a dead holder's lease runs out within 10 s
        while True:
            states = []
            for proc in procs:
                async with http.get(f"{proc.base}/metrics") as resp:
                    text = await resp.text()
                states.append(metric(text, 'crypitor_follower_leader{chain="eth"}'))
            if states.count(1.0) == 1 and all(s is not None for s in states):
                return procs[states.index(1.0)]
            await asyncio.sleep(0.2)


def metric(text: str, series: str) -> float | None:
    line = next((x for x in text.splitlines() if x.startswith(series + " ")), None)
    return None if line is None else float(line.rsplit(" ", 1)[1])


def seen(hits: Hits) -> list[tuple[str, str, str]]:
    """(event type, tx hash, event id) of every delivery."""
    bodies = [json.loads(body) for _, body in hits]
    return [(b["type"], b["data"]["tx_hash"], b["id"]) for b in bodies]
