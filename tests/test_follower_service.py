"""The whole path as a customer uses it: a chain configured for the service, a monitor
created through the API, a transfer mined on ganache, a signed webhook at the customer's URL."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from service.app import ChainSpec, Service, Settings
from tests.support import contracts
from tests.support.chain_nodes import GanacheFactory, GanacheNode
from tests.support.net import free_port

pytestmark = pytest.mark.timeout(90)
KEY = "follower-service-key"


@pytest.fixture(scope="module")
def node(ganache_factory: GanacheFactory) -> GanacheNode:
    (started,) = ganache_factory.start()
    return started


async def test_a_monitor_made_through_the_api_gets_signed_transfer_webhooks(
        node: GanacheNode, tmp_path: Path) -> None:
    hits: list[tuple[dict[str, str], bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sink_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", sink_port).start()
    listen = f"127.0.0.1:{free_port()}"
    start = await node.head() + 1
    svc = Service(Settings(listen=listen, data_dir=tmp_path, api_keys=[KEY],
                           allow_private_targets=True, chains={"eth": 2},
                           followers={"eth": ChainSpec(node.url, 2, 0.05, 1337, start)}))
    await svc.start()
    auth = {"Authorization": f"Bearer {KEY}"}

    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.request(
                method, f"http://{listen}{path}", json=body, headers=auth) as resp:
            return resp.status, await resp.json()

    try:
        status, endpoint = await call("POST", "/v1/endpoints",
                                      {"url": f"http://127.0.0.1:{sink_port}/hook"})
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
        await runner.cleanup()
