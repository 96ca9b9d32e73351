"""Issue 13, item 4 through the service: `[service.chains.NAME] max_response_bytes` reaches the
follower's node client, so an answer over it is refused and counted as "too_large"."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from monitor.config import ChainFollowConfig, ServiceSection
from service.app import Service
from tests.support.chain_nodes import Canned, FakeNode, Seen, json_answer
from tests.support.net import free_port

pytestmark = pytest.mark.timeout(60)
KEY = "answer-limit-key"
LIMIT = 64 * 1024


async def test_a_chain_s_answer_limit_reaches_its_follower(fake_node: FakeNode,
                                                           tmp_path: Path) -> None:
    async def oversized(seen: Seen) -> Canned:
        # a proper answer to whatever was asked, padded past the configured limit
        calls = seen.body if isinstance(seen.body, list) else [seen.body]
        answers = [{"jsonrpc": "2.0", "id": c["id"], "result": "0x10", "pad": "x" * LIMIT}
                   for c in calls]
        return json_answer(answers if isinstance(seen.body, list) else answers[0])

    fake_node.answer("/", oversized)
    listen = f"127.0.0.1:{free_port()}"
    chain = ChainFollowConfig(fake_node.url, poll_interval=0.05, max_response_bytes=LIMIT)
    svc = Service(ServiceSection(listen=listen, api_keys=(KEY,), chains={"eth": chain}),
                  tmp_path)
    await svc.start()
    try:
        async with aiohttp.ClientSession() as http, asyncio.timeout(30):
            while True:
                async with http.get(f"http://{listen}/metrics") as resp:
                    text = await resp.text()
                errors = {line.split(" ")[0]: float(line.rsplit(" ", 1)[1])
                          for line in text.splitlines()
                          if line.startswith("crypitor_follower_rpc_errors_total{")}
                if errors:
                    break
                await asyncio.sleep(0.05)
    finally:
        await svc.stop()
    assert set(errors) == {'crypitor_follower_rpc_errors_total{chain="eth",kind="too_large"}'}
