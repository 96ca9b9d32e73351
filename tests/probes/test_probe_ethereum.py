"""The ethereum probe against real ganache nodes, and against a proxy in front of one that
misbehaves the ways real nodes and providers do. The nodes are shared: only differences in
block numbers that a test creates itself are asserted, never absolute numbers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from probes.base import OptionError, ProbeContext, ProbeResult, Reason
from probes.ethereum import EthereumOptions, EthereumProbe
from tests.support.chain_nodes import (
    HANG,
    Canned,
    FakeNode,
    FrozenClock,
    GanacheNode,
    Handler,
    Seen,
    json_answer,
    text_answer,
)
from tests.support.net import free_port

HEALTHY: dict[str, Any] = {"min_peers": 0, "chain_id": 1337}  # ganache has no peers


async def run(session: aiohttp.ClientSession, url: str, *, timeout: float = 5.0,
              ctx: ProbeContext | None = None, **options: Any) -> ProbeResult:
    probe = EthereumProbe(url, timeout, EthereumOptions(**options),
                          ctx or ProbeContext(session=session))
    return await asyncio.wait_for(probe.run(), timeout + 5)  # a hung probe fails the test


def num(result: ProbeResult, key: str) -> float:
    value = result.values[key]
    assert isinstance(value, int | float) and not isinstance(value, bool), value
    return value


async def level(a: GanacheNode, b: GanacheNode) -> int:
    """Mine on the lower node until both have the same head; returns it."""
    head_a, head_b = await a.head(), await b.head()
    await (a.mine(head_b - head_a) if head_a < head_b else b.mine(head_a - head_b))
    return max(head_a, head_b)


def proxy(node: GanacheNode, answers: dict[str, dict[str, Any]] | None = None,
          refuse_batch: bool = False) -> Handler:
    """A provider in front of `node`: forwards calls, except methods answered from `answers`."""
    answers = answers or {}

    async def one(call: dict[str, Any]) -> dict[str, Any]:
        if call["method"] in answers:
            return {"jsonrpc": "2.0", "id": call["id"], **answers[call["method"]]}
        result = await node.rpc(call["method"], call["params"])
        return {"jsonrpc": "2.0", "id": call["id"], "result": result}

    async def handle(seen: Seen) -> Canned:
        if isinstance(seen.body, list):
            if refuse_batch:
                return json_answer({"jsonrpc": "2.0", "id": None, "error": {
                    "code": -32600, "message": "batch requests are not supported"}})
            return json_answer([await one(call) for call in seen.body])
        return json_answer(await one(seen.body))

    return handle


async def test_healthy_node(ganache: GanacheNode, rpc_session: aiohttp.ClientSession) -> None:
    head = await ganache.mine()
    result = await run(rpc_session, ganache.url, **HEALTHY)
    assert result.success and result.reason is None and result.detail == ""
    values = result.values
    assert (values["head_block"], values["chain_id"], values["syncing"], values["peers"]) == (
        head, 1337, False, 0)
    assert isinstance(values["head_age_seconds"], float) and values["head_age_seconds"] >= 0
    assert "block_lag" not in values and result.warnings == ()


async def test_wrong_chain_id(ganache: GanacheNode, rpc_session: aiohttp.ClientSession) -> None:
    result = await run(rpc_session, ganache.url, min_peers=0, chain_id=1)
    assert (result.success, result.reason) == (False, Reason.CHAIN_ID)
    assert "1337" in result.detail and "expected 1" in result.detail
    assert result.values["chain_id"] == 1337 and "head_block" in result.values


async def test_no_peers(ganache: GanacheNode, rpc_session: aiohttp.ClientSession) -> None:
    await ganache.mine()
    result = await run(rpc_session, ganache.url, min_peers=1)
    assert result.reason == Reason.PEERS and result.values["peers"] == 0
    assert "0 peers" in result.detail


async def test_lag_against_a_reference_url(ganache_pair: tuple[GanacheNode, GanacheNode],
                                           rpc_session: aiohttp.ClientSession) -> None:
    ours, reference = ganache_pair
    head = await level(ours, reference)
    await reference.mine(3)
    result = await run(rpc_session, ours.url, reference=reference.url, **HEALTHY)
    assert result.success and result.values["block_lag"] == 3
    assert result.values["head_block"] == head

    await reference.mine(4)
    result = await run(rpc_session, ours.url, reference=reference.url, **HEALTHY)
    assert (result.success, result.reason, result.values["block_lag"]) == (False, Reason.LAG, 7)
    assert result.values["head_block"] == head  # what the node answered, though it failed
    assert "7 blocks behind reference 127.0.0.1 " in result.detail  # the host, not the URL

    await ours.mine(10)  # ahead of the reference: no negative lag
    result = await run(rpc_session, ours.url, reference=reference.url, **HEALTHY)
    assert result.success and result.values["block_lag"] == 0


async def test_lag_against_a_reference_target(ganache_pair: tuple[GanacheNode, GanacheNode],
                                              rpc_session: aiohttp.ClientSession) -> None:
    ours, reference = ganache_pair
    await level(ours, reference)
    await reference.mine(6)
    last = {"mainnet-ref": await run(rpc_session, reference.url, **HEALTHY)}
    ctx = ProbeContext(session=rpc_session, last_result=last.get)
    result = await run(rpc_session, ours.url, ctx=ctx, reference="mainnet-ref", **HEALTHY)
    assert (result.reason, result.values["block_lag"]) == (Reason.LAG, 6)
    assert "6 blocks behind reference mainnet-ref " in result.detail
    result = await run(rpc_session, ours.url, ctx=ctx, reference="mainnet-ref",
                       **HEALTHY, max_lag_blocks=6)
    assert result.success and result.values["block_lag"] == 6


async def test_reference_unavailable_is_a_warning(ganache: GanacheNode,
                                                  rpc_session: aiohttp.ClientSession) -> None:
    await ganache.mine()
    gone = f"http://127.0.0.1:{free_port()}"
    for reference, warning in [(gone, "reference unavailable"),
                               ("no-such-target", "no-such-target has no recent head_block")]:
        result = await run(rpc_session, ganache.url, reference=reference, **HEALTHY)
        assert result.success and "block_lag" not in result.values
        assert len(result.warnings) == 1 and warning in result.warnings[0]


async def test_slow_reference_costs_a_warning_not_a_timeout(
        ganache: GanacheNode, fake_node: FakeNode, rpc_session: aiohttp.ClientSession) -> None:
    await ganache.mine()
    fake_node.answer("/", HANG)
    result = await run(rpc_session, ganache.url, timeout=0.5, reference=fake_node.url,
                       **HEALTHY)
    assert result.success and "block_lag" not in result.values
    assert "reference unavailable" in result.warnings[0] and "no answer" in result.warnings[0]


async def test_head_age_grows_while_nothing_is_mined(
        ganache: GanacheNode, rpc_session: aiohttp.ClientSession) -> None:
    await ganache.mine()
    first = await run(rpc_session, ganache.url, **HEALTHY)
    await asyncio.sleep(1.5)
    second = await run(rpc_session, ganache.url, **HEALTHY)
    assert first.values["head_block"] == second.values["head_block"]
    assert num(second, "head_age_seconds") > num(first, "head_age_seconds")


async def test_stale_head(ganache: GanacheNode, rpc_session: aiohttp.ClientSession) -> None:
    later = FrozenClock(datetime.now(UTC) + timedelta(hours=1))
    result = await run(rpc_session, ganache.url, ctx=ProbeContext(rpc_session, later),
                       **HEALTHY)
    assert result.reason == Reason.STALE
    assert num(result, "head_age_seconds") >= 3600 and "at most 180s" in result.detail


ProxyMaker = Callable[..., Awaitable[FakeNode]]


@pytest.fixture
def behind_proxy(ganache: GanacheNode,
                 fake_nodes: Callable[[], Awaitable[FakeNode]]) -> ProxyMaker:
    async def make(**kwargs: Any) -> FakeNode:
        node = await fake_nodes()
        node.answer("/", proxy(ganache, **kwargs))
        return node
    return make


async def test_syncing_node(behind_proxy: ProxyMaker, rpc_session: aiohttp.ClientSession) -> None:
    syncing = {"startingBlock": "0x0", "currentBlock": "0x10", "highestBlock": "0x20"}
    node = await behind_proxy(answers={"eth_syncing": {"result": syncing}})
    result = await run(rpc_session, node.url, **HEALTHY)
    assert (result.reason, result.values["syncing"]) == (Reason.SYNCING, True)
    assert "block 16 of 32" in result.detail


async def test_batch_refused_falls_back_to_single_calls(
        behind_proxy: ProxyMaker, rpc_session: aiohttp.ClientSession) -> None:
    node = await behind_proxy(refuse_batch=True)
    probe = EthereumProbe(node.url, 5.0, EthereumOptions(**HEALTHY),
                          ProbeContext(session=rpc_session))
    first, second = await probe.run(), await probe.run()
    assert first.success and second.success and second.values["chain_id"] == 1337
    batches = [seen for seen in node.requests if isinstance(seen.body, list)]
    assert len(batches) == 1  # the probe remembers the refusal
    assert len(node.requests) == 1 + 2 * 5


async def test_provider_hiding_peers(behind_proxy: ProxyMaker,
                                     rpc_session: aiohttp.ClientSession) -> None:
    hidden = {"error": {"code": -32601, "message": "the method net_peerCount does not exist"}}
    node = await behind_proxy(answers={"net_peerCount": hidden})
    result = await run(rpc_session, node.url, min_peers=3)
    assert result.success and "peers" not in result.values


async def test_rpc_error(behind_proxy: ProxyMaker, rpc_session: aiohttp.ClientSession) -> None:
    broken = {"error": {"code": -32000, "message": "header not found"}}
    node = await behind_proxy(answers={"eth_blockNumber": broken})
    result = await run(rpc_session, node.url, **HEALTHY)
    assert result.reason == Reason.RPC_ERROR
    assert "eth_blockNumber" in result.detail and "header not found" in result.detail


async def test_block_with_wrong_types(behind_proxy: ProxyMaker,
                                      rpc_session: aiohttp.ClientSession) -> None:
    node = await behind_proxy(answers={"eth_getBlockByNumber": {"result": {"number": 5}}})
    result = await run(rpc_session, node.url, **HEALTHY)
    assert result.reason == Reason.MALFORMED and "eth_getBlockByNumber" in result.detail


@pytest.mark.parametrize(("answer", "reason", "words"), [
    (text_answer("<html><title>Welcome to nginx</title></html>"), Reason.MALFORMED,
     "not JSON"),
    (text_answer("Bad Gateway", status=502), Reason.STATUS, "HTTP 502"),
    (json_answer([]), Reason.MALFORMED, "no answer with id"),
    # issue 13: a provider's quota and an oversized answer have reasons of their own
    (Canned(b"<h1>Too Many Requests</h1>", 429, "text/html", {"Retry-After": "2"}),
     Reason.RATE_LIMITED, "HTTP 429 (rate limited)"),
    (json_answer({"jsonrpc": "2.0", "id": None,
                  "error": {"code": -32005, "message": "limit exceeded"}}),
     Reason.RATE_LIMITED, "rate limited: RPC error -32005"),
    (Canned(b" " * (16 * 1024 * 1024 + 1)), Reason.TOO_LARGE,
     "answer larger than 16777216 bytes"),
])
async def test_broken_answers(answer: Canned, reason: Reason, words: str,
                              fake_node: FakeNode, rpc_session: aiohttp.ClientSession) -> None:
    fake_node.answer("/", answer)
    result = await run(rpc_session, fake_node.url, **HEALTHY)
    assert (result.success, result.reason) == (False, reason)
    assert words in result.detail and "eth_blockNumber" in result.detail


async def test_refused(rpc_session: aiohttp.ClientSession) -> None:
    result = await run(rpc_session, f"http://127.0.0.1:{free_port()}", **HEALTHY)
    assert result.reason == Reason.REFUSED and "eth_blockNumber" in result.detail
    assert result.values == {}


async def test_hanging_node_times_out(fake_node: FakeNode,
                                      rpc_session: aiohttp.ClientSession) -> None:
    fake_node.answer("/", HANG)
    result = await run(rpc_session, fake_node.url, timeout=0.5, **HEALTHY)
    assert result.reason == Reason.TIMEOUT and not result.success


@pytest.mark.parametrize(("options", "key"), [
    ({"max_lag_blocks": -1}, "max_lag_blocks"), ({"max_head_age": 0.0}, "max_head_age"),
    ({"min_peers": -1}, "min_peers"), ({"chain_id": 0}, "chain_id"),
    ({"reference": "ws://node:8546"}, "reference"), ({"reference": " eth "}, "reference")])
def test_options_are_checked(options: dict[str, Any], key: str) -> None:
    with pytest.raises(OptionError) as caught:
        EthereumOptions(**options)
    assert caught.value.key == key
