"""The eos, xrpl and bitcoin probes against a fake node serving the nodes' documented answers:
healthy, each threshold crossed, errors, garbage, and a node that never answers. The probe
clock is frozen so ages are exact; the sample times are set relative to it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from probes.base import OptionError, ProbeContext, ProbeResult, Reason
from probes.bitcoin import BitcoinOptions, BitcoinProbe
from probes.eos import EosOptions, EosProbe
from probes.xrpl import XrplOptions, XrplProbe
from tests.support.chain_nodes import (
    HANG,
    Canned,
    FakeNode,
    FrozenClock,
    Seen,
    json_answer,
    text_answer,
)
from tests.support.node_samples import (
    BitcoinCoreFake,
    eos_info,
    nodeos_error,
    rippled_error,
    xrpl_info,
)

NOW = datetime.now(UTC).replace(microsecond=0)  # whole seconds: nodeos times keep only ms
GET_INFO = "/v1/chain/get_info"
Probe = type[EosProbe] | type[XrplProbe] | type[BitcoinProbe]


async def run(probe_type: Probe, node: FakeNode, session: aiohttp.ClientSession,
              options: Any, timeout: float = 3.0) -> ProbeResult:
    ctx = ProbeContext(session=session, clock=FrozenClock(NOW))
    probe = probe_type(node.url, timeout, options, ctx)
    return await asyncio.wait_for(probe.run(), timeout + 5)  # a hung probe fails the test


# --- eos -----------------------------------------------------------------------------------


async def eos(node: FakeNode, session: aiohttp.ClientSession, answer: Canned | str,
              **options: Any) -> ProbeResult:
    node.answer(GET_INFO, answer)
    return await run(EosProbe, node, session, EosOptions(**options))


async def test_eos_healthy(fake_node: FakeNode, rpc_session: aiohttp.ClientSession) -> None:
    result = await eos(fake_node, rpc_session, json_answer(eos_info(NOW, head_age=0.5)))
    assert result.success and result.reason is None
    assert dict(result.values) == {"head_block": 272466135, "lib_lag": 331,
                                   "head_age_seconds": 0.5}
    local = await eos(fake_node, rpc_session,
                      json_answer(eos_info(NOW, 2.0, "eos_get_info_local.json")))
    assert local.success and (local.values["head_block"], local.values["lib_lag"]) == (134, 1)
    assert fake_node.requests[-1].path == GET_INFO


async def test_eos_stale_head(fake_node: FakeNode, rpc_session: aiohttp.ClientSession) -> None:
    result = await eos(fake_node, rpc_session, json_answer(eos_info(NOW, head_age=30)))
    assert (result.success, result.reason) == (False, Reason.STALE)
    assert result.values["head_age_seconds"] == 30.0 and result.values["head_block"] == 272466135
    assert "30.0s old" in result.detail
    relaxed = await eos(fake_node, rpc_session, json_answer(eos_info(NOW, head_age=30)),
                        max_head_age=60.0)
    assert relaxed.success


async def test_eos_lib_lag(fake_node: FakeNode, rpc_session: aiohttp.ClientSession) -> None:
    behind = eos_info(NOW, last_irreversible_block_num=272466135 - 1000)
    result = await eos(fake_node, rpc_session, json_answer(behind))
    assert (result.reason, result.values["lib_lag"]) == (Reason.LAG, 1000)
    # under Savanna finality the same 331 blocks of the sample would be far too many
    savanna = await eos(fake_node, rpc_session, json_answer(eos_info(NOW)), max_lib_lag=10)
    assert savanna.reason == Reason.LAG and "331 blocks" in savanna.detail
    both = await eos(fake_node, rpc_session, json_answer(eos_info(NOW, 60)), max_lib_lag=10)
    assert both.reason == Reason.STALE  # the dead head is the first thing to know


@pytest.mark.parametrize(("answer", "reason", "words"), [
    (nodeos_error(3010000, "chain_type_exception", "chain type exception"), Reason.RPC_ERROR,
     "chain_type_exception"),
    (text_answer("Not Found", status=404, content_type="text/plain"), Reason.STATUS,
     "HTTP 404"),
    (text_answer("<html>maintenance</html>"), Reason.MALFORMED, "not JSON"),
    (json_answer(eos_info(NOW, head_block_num="272466135")), Reason.MALFORMED,
     "head_block_num should be an integer"),
    (json_answer(eos_info(NOW, head_block_time=None)), Reason.MALFORMED,
     "head_block_time is missing"),
    (json_answer([]), Reason.MALFORMED, "expected an object"),
    (HANG, Reason.TIMEOUT, "within"),
])
async def test_eos_broken(answer: Canned | str, reason: Reason, words: str,
                          fake_node: FakeNode, rpc_session: aiohttp.ClientSession) -> None:
    fake_node.answer(GET_INFO, answer)
    result = await run(EosProbe, fake_node, rpc_session, EosOptions(), timeout=0.5)
    assert (result.success, result.reason) == (False, reason)
    assert words in result.detail
    if reason != Reason.TIMEOUT:
        assert "get_info" in result.detail


# --- xrpl ----------------------------------------------------------------------------------


async def xrpl(node: FakeNode, session: aiohttp.ClientSession, answer: Canned | str,
               **options: Any) -> ProbeResult:
    node.answer("/", answer)
    return await run(XrplProbe, node, session, XrplOptions(**options))


async def test_xrpl_healthy(fake_node: FakeNode, rpc_session: aiohttp.ClientSession) -> None:
    result = await xrpl(fake_node, rpc_session, json_answer(xrpl_info()))
    assert result.success
    assert dict(result.values) == {"head_block": 82521761, "head_age_seconds": 1.0,
                                   "peers": 22, "server_state": "full", "load_factor": 1.0}
    assert fake_node.requests[-1].body == {"method": "server_info", "params": [{}]}


@pytest.mark.parametrize(("changes", "drop", "reason", "words"), [
    ({"server_state": "disconnected", "peers": 0}, ("validated_ledger",), Reason.STATE,
     "server_state is disconnected"),
    ({"server_state": "syncing"}, (), Reason.STATE, "syncing"),
    ({"amendment_blocked": True}, (), Reason.STATE, "amendment blocked"),
    ({}, ("validated_ledger",), Reason.STALE, "no validated ledger"),
    ({"validated_ledger": {"seq": 82521761, "age": 7}}, (), Reason.STALE, "7s old"),
    ({"peers": 7}, (), Reason.PEERS, "7 peers"),
    ({"load_factor": 256}, (), Reason.LOAD, "load_factor is 256"),
])
async def test_xrpl_unhealthy(changes: dict[str, Any], drop: tuple[str, ...], reason: Reason,
                              words: str, fake_node: FakeNode,
                              rpc_session: aiohttp.ClientSession) -> None:
    answer = json_answer(xrpl_info(drop, **changes))
    result = await xrpl(fake_node, rpc_session, answer)
    assert (result.success, result.reason) == (False, reason)
    assert words in result.detail
    assert result.values["server_state"] == changes.get("server_state", "full")
    assert result.values["peers"] == changes.get("peers", 22)
    assert ("head_block" in result.values) == ("validated_ledger" not in drop)


async def test_xrpl_thresholds_are_rippled_s_own(fake_node: FakeNode,
                                                 rpc_session: aiohttp.ClientSession) -> None:
    edge = xrpl_info(peers=8, load_factor=100, validated_ledger={"seq": 5, "age": 6})
    assert (await xrpl(fake_node, rpc_session, json_answer(edge))).success
    strict = await xrpl(fake_node, rpc_session, json_answer(edge), min_peers=9)
    assert strict.reason == Reason.PEERS


@pytest.mark.parametrize(("answer", "reason", "words"), [
    (json_answer(rippled_error("noNetwork", 17, "Not synced to the network.")),
     Reason.RPC_ERROR, "noNetwork"),
    (text_answer("<html>Bad Gateway</html>", status=502), Reason.STATUS, "HTTP 502"),
    (text_answer("{\"result\":"), Reason.MALFORMED, "not JSON"),
    (json_answer(xrpl_info(peers="many")), Reason.MALFORMED, "peers should be an integer"),
    (json_answer(xrpl_info(drop=("load_factor",))), Reason.MALFORMED, "load_factor"),
    (json_answer({"result": {"status": "success"}}), Reason.MALFORMED, "info"),
    (HANG, Reason.TIMEOUT, "within"),
])
async def test_xrpl_broken(answer: Canned | str, reason: Reason, words: str,
                           fake_node: FakeNode, rpc_session: aiohttp.ClientSession) -> None:
    fake_node.answer("/", answer)
    result = await run(XrplProbe, fake_node, rpc_session, XrplOptions(), timeout=0.5)
    assert (result.success, result.reason) == (False, reason)
    assert words in result.detail and result.values == {}


# --- bitcoin -------------------------------------------------------------------------------


async def bitcoin(node: FakeNode, session: aiohttp.ClientSession, fake: BitcoinCoreFake,
                  **options: Any) -> ProbeResult:
    node.answer("/", fake)
    options = {"rpc_user": fake.user, "rpc_password": fake.password, **options}
    return await run(BitcoinProbe, node, session, BitcoinOptions(**options), timeout=0.5)


async def test_bitcoin_healthy(fake_node: FakeNode, rpc_session: aiohttp.ClientSession) -> None:
    result = await bitcoin(fake_node, rpc_session, BitcoinCoreFake())
    assert result.success
    assert dict(result.values) == {"head_block": 870000, "block_lag": 0, "peers": 10,
                                   "syncing": False}
    methods = [seen.body["method"] for seen in fake_node.requests]
    assert methods == ["getblockchaininfo", "getnetworkinfo"]


@pytest.mark.parametrize(("changes", "reason", "words"), [
    ({"initial_block_download": True, "blocks": 100_000, "verification_progress": 0.05},
     Reason.SYNCING, "5.0% verified"),
    ({"headers": 870_003}, Reason.LAG, "3 blocks behind"),
    ({"connections": 3}, Reason.PEERS, "3 peers"),
])
async def test_bitcoin_unhealthy(changes: dict[str, Any], reason: Reason, words: str,
                                 fake_node: FakeNode,
                                 rpc_session: aiohttp.ClientSession) -> None:
    fake = BitcoinCoreFake(**changes)
    result = await bitcoin(fake_node, rpc_session, fake)
    assert (result.success, result.reason) == (False, reason)
    assert words in result.detail
    assert result.values["block_lag"] == fake.headers - fake.blocks
    assert result.values["syncing"] is fake.initial_block_download


async def test_bitcoin_lag_within_limit(fake_node: FakeNode,
                                        rpc_session: aiohttp.ClientSession) -> None:
    result = await bitcoin(fake_node, rpc_session, BitcoinCoreFake(headers=870_002))
    assert result.success and result.values["block_lag"] == 2


async def test_bitcoin_credentials(fake_node: FakeNode,
                                   rpc_session: aiohttp.ClientSession) -> None:
    fake = BitcoinCoreFake()
    wrong = await bitcoin(fake_node, rpc_session, fake, rpc_password="guess")
    assert wrong.reason == Reason.STATUS and "HTTP 401" in wrong.detail
    assert "guess" not in wrong.detail
    anonymous = await bitcoin(fake_node, rpc_session, fake, rpc_user="", rpc_password="")
    assert anonymous.reason == Reason.STATUS
    in_url = fake_node.url.replace("http://", f"http://{fake.user}:{fake.password}@")
    ctx = ProbeContext(session=rpc_session, clock=FrozenClock(NOW))
    result = await BitcoinProbe(in_url, 1.0, BitcoinOptions(), ctx).run()
    assert result.success
    unresolved = await bitcoin(fake_node, rpc_session, fake, rpc_password="env:BTC_RPC_PW")
    assert unresolved.reason == Reason.CONFIG


async def test_bitcoin_warming_up(fake_node: FakeNode,
                                  rpc_session: aiohttp.ClientSession) -> None:
    fake = BitcoinCoreFake(error=(-28, "Loading block index…"))
    result = await bitcoin(fake_node, rpc_session, fake)
    assert result.reason == Reason.RPC_ERROR
    assert "getblockchaininfo" in result.detail and "-28" in result.detail


async def blocks_as_text(seen: Seen) -> Canned:
    info = {"chain": "main", "blocks": "870000", "headers": 870000,
            "initialblockdownload": False, "verificationprogress": 1.0}
    return json_answer({"result": info, "error": None, "id": seen.body["id"]})


@pytest.mark.parametrize(("answer", "reason", "words"), [
    (blocks_as_text, Reason.MALFORMED, "blocks should be an integer"),
    (text_answer("<html>proxy error</html>"), Reason.MALFORMED, "not JSON"),
    (json_answer({"result": None, "error": None, "id": 1}), Reason.MALFORMED,
     "expected an object"),
    (HANG, Reason.TIMEOUT, "within"),
])
async def test_bitcoin_broken(answer: Any, reason: Reason, words: str, fake_node: FakeNode,
                              rpc_session: aiohttp.ClientSession) -> None:
    fake_node.answer("/", answer)
    result = await run(BitcoinProbe, fake_node, rpc_session, BitcoinOptions(), timeout=0.5)
    assert (result.success, result.reason) == (False, reason)
    assert words in result.detail


# --- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(("options_type", "options", "key"), [
    (EosOptions, {"max_head_age": 0.0}, "max_head_age"),
    (EosOptions, {"max_lib_lag": -1}, "max_lib_lag"),
    (XrplOptions, {"max_ledger_age": -1.0}, "max_ledger_age"),
    (XrplOptions, {"min_peers": -1}, "min_peers"),
    (XrplOptions, {"max_load_factor": 0.5}, "max_load_factor"),
    (BitcoinOptions, {"max_lag_blocks": -1}, "max_lag_blocks"),
    (BitcoinOptions, {"min_peers": -2}, "min_peers"),
    (BitcoinOptions, {"rpc_password": "secret"}, "rpc_user"),
])
def test_options_are_checked(options_type: Any, options: dict[str, Any], key: str) -> None:
    with pytest.raises(OptionError) as caught:
        options_type(**options)
    assert caught.value.key == key
