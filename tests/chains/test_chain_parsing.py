"""chains/: reading answers — strict hex quantities, hashes, and every node's missing or
mistyped fields — without any network."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from chains import MalformedResponse, RpcError
from chains.bitcoin import parse_blockchain_info
from chains.eos import parse_info
from chains.ethereum_types import SyncStatus, parse_block, parse_syncing, quantity
from chains.xrpl import parse_server_info
from tests.support.chain_nodes import load_fixture
from tests.support.node_samples import xrpl_info

HASH = "0x" + "ab" * 32



@pytest.mark.parametrize(("raw", "value"), [("0x0", 0), ("0x1a", 26), ("0xFF", 255),
                                            ("0x000a", 10)])
def test_quantity_reads_hex(raw: str, value: int) -> None:
    assert quantity(raw, "eth_blockNumber") == value


@pytest.mark.parametrize("raw", ["1a", "0x", "0xg1", "0X1a", " 0x1", "", 26, None, True, "0x-1"])
def test_quantity_refuses_anything_looser(raw: object) -> None:
    with pytest.raises(MalformedResponse, match=r"^eth_blockNumber: expected a 0x-prefixed"):
        quantity(raw, "eth_blockNumber")


def test_syncing_false_or_an_object() -> None:
    assert parse_syncing(False, "eth_syncing") is False
    status = parse_syncing({"startingBlock": "0x1", "currentBlock": "0x10",
                            "highestBlock": "0x20"}, "eth_syncing")
    assert status == SyncStatus(1, 16, 32)
    assert parse_syncing({"currentBlock": "0x10"}, "eth_syncing") == SyncStatus(None, 16, None)
    with pytest.raises(MalformedResponse, match=r"eth_syncing\.highestBlock"):
        parse_syncing({"highestBlock": "32"}, "eth_syncing")
    with pytest.raises(MalformedResponse, match="expected false or an object"):
        parse_syncing("no", "eth_syncing")


def block_json(**changes: Any) -> dict[str, Any]:
    block: dict[str, Any] = {"number": "0x10", "hash": HASH, "parentHash": "0x" + "00" * 32,
                             "timestamp": "0x65000000", "transactions": [HASH]}
    block.update(changes)
    return {k: v for k, v in block.items() if v is not None}


def test_block_parses_and_lowercases_hashes() -> None:
    block = parse_block(block_json(hash=HASH.upper().replace("0X", "0x")), "get")
    assert block is not None
    assert (block.number, block.hash, block.timestamp) == (16, HASH, 0x65000000)
    assert block.transactions == (HASH,)
    assert parse_block(None, "get") is None  # not mined yet


@pytest.mark.parametrize(("changes", "field"), [
    ({"hash": None}, "hash"), ({"hash": "0x1234"}, "hash"), ({"number": 16}, "number"),
    ({"timestamp": None}, "timestamp"), ({"timestamp": "0x1" + "0" * 16}, "timestamp"),
    ({"transactions": "0x"}, "transactions")])
def test_block_with_a_bad_field_names_it(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(MalformedResponse, match=f"eth_getBlockByNumber.{field}"):
        parse_block(block_json(**changes), "eth_getBlockByNumber")


def test_eos_info_time_is_utc_without_a_zone() -> None:
    info = parse_info(load_fixture("eos_get_info_mainnet.json"))
    assert info.head_block_time == datetime(2022, 10, 10, 13, 34, 3, 500_000, tzinfo=UTC)
    assert info.lib_lag == 272466135 - 272465804
    assert info.server_version_string == "v3.1.0"
    local = parse_info(load_fixture("eos_get_info_local.json"))
    assert (local.head_block_num, local.lib_lag) == (134, 1)
    zoned = parse_info({**load_fixture("eos_get_info_local.json"),
                        "head_block_time": "2019-11-18T23:13:10.500+01:00"})
    assert zoned.head_block_time == local.head_block_time


@pytest.mark.parametrize(("changes", "message"), [
    ({"head_block_num": None}, "head_block_num is missing"),
    ({"head_block_num": "134"}, "head_block_num should be an integer"),
    ({"last_irreversible_block_num": True}, "last_irreversible_block_num should be an int"),
    ({"head_block_time": "yesterday"}, "not an ISO time"),
    ({"chain_id": 7}, "chain_id should be a string")])
def test_eos_info_with_bad_fields(changes: dict[str, Any], message: str) -> None:
    sample = load_fixture("eos_get_info_local.json")
    sample.update(changes)
    with pytest.raises(MalformedResponse, match=f"^get_info: .*{message}"):
        parse_info({k: v for k, v in sample.items() if v is not None})


def test_eos_error_body_is_an_rpc_error() -> None:
    body = {"code": 500, "message": "Internal Service Error",
            "error": {"code": 3100002, "name": "unknown_block_exception",
                      "what": "Unknown block", "details": []}}
    with pytest.raises(RpcError) as caught:
        parse_info(body)
    assert caught.value.code == 3100002
    assert str(caught.value).startswith("get_info: ")
    assert "unknown_block_exception" in caught.value.message


def test_xrpl_server_info_sample() -> None:
    info = parse_server_info(load_fixture("xrpl_server_info.json"))
    assert (info.server_state, info.peers, info.load_factor) == ("full", 22, 1.0)
    assert info.validated_ledger is not None
    assert (info.validated_ledger.seq, info.validated_ledger.age) == (82521761, 1)
    assert not info.amendment_blocked
    assert info.complete_ledgers == "32570-82521761"


def test_xrpl_without_validated_ledger_or_with_amendment_block() -> None:
    info = parse_server_info(xrpl_info(drop=("validated_ledger",), amendment_blocked=True,
                                       complete_ledgers="empty"))
    assert info.validated_ledger is None
    assert info.amendment_blocked


def test_xrpl_error_names_the_rippled_error() -> None:
    answer = {"result": {"error": "noNetwork", "error_code": 17, "status": "error",
                         "error_message": "Not synced to the network.", "request": {}}}
    with pytest.raises(RpcError, match="noNetwork") as caught:
        parse_server_info(answer)
    assert caught.value.code == 17


@pytest.mark.parametrize("answer", [
    {"info": {}}, {"result": {"status": "success"}}, {"result": {"status": "maybe"}},
    xrpl_info(peers="22"), xrpl_info(drop=("server_state",)),
    xrpl_info(validated_ledger={"seq": 5}), xrpl_info(amendment_blocked="yes"), [1, 2]])
def test_xrpl_malformed(answer: Any) -> None:
    with pytest.raises(MalformedResponse, match=r"^server_info"):
        parse_server_info(answer)


def test_bitcoin_time_is_optional_before_v25() -> None:
    info = {"chain": "main", "blocks": 10, "headers": 12, "initialblockdownload": False,
            "verificationprogress": 1}
    parsed = parse_blockchain_info(info)
    assert (parsed.time, parsed.lag, parsed.verification_progress) == (None, 2, 1.0)
    with pytest.raises(MalformedResponse, match="headers is missing"):
        parse_blockchain_info({**info, "headers": None})
    with pytest.raises(MalformedResponse, match="initialblockdownload should be true or false"):
        parse_blockchain_info({**info, "initialblockdownload": 0})
