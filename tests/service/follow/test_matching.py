"""The monitor index: which transfers concern which monitors, and how Transfer logs are read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from chains import MalformedResponse
from chains.ethereum_types import Log, parse_logs, parse_receipt
from service.follow.matching import TRANSFER_TOPIC, IndexCache, MonitorIndex, Transfer, log_transfer
from service.models import Category
from tests.service.follow.sim import (
    ALICE,
    BOB,
    CAROL,
    NFT,
    TOKEN,
    ZERO,
    FakeStore,
    addr,
    fake_hash,
    monitor,
    word,
)

pytestmark = pytest.mark.timeout(60)


# --- the index -------------------------------------------------------------------------------


def transfer(frm: str, to: str, category: Category = "native", contract: str | None = None,
             value: int = 5) -> Transfer:
    log_index = None if category == "native" else 0
    return Transfer(category, fake_hash(frm, to, value), log_index, 10, ZERO, frm, to, contract,
                    value)


def test_index_direction_category_and_allow_list() -> None:
    index = MonitorIndex([
        monitor("m_in", ALICE, direction="in"),
        monitor("m_out", ALICE, direction="out"),
        monitor("m_all", ALICE),
        monitor("m_tokens", ALICE, native=False, contracts=frozenset({TOKEN})),
        monitor("m_nft", ALICE, native=False, erc20=False),
        monitor("m_off", ALICE, enabled=False),
    ])
    def hits(t: Transfer) -> set[tuple[str, str]]:
        return {(m.id, d) for m, d in index.match(t)}

    assert hits(transfer(BOB, ALICE)) == {("m_in", "in"), ("m_all", "in")}
    assert hits(transfer(ALICE, BOB)) == {("m_out", "out"), ("m_all", "out")}
    assert hits(transfer(BOB, ALICE, "erc20", TOKEN)) == {
        ("m_in", "in"), ("m_all", "in"), ("m_tokens", "in")}
    assert hits(transfer(BOB, ALICE, "erc20", addr(0x99))) == {("m_in", "in"), ("m_all", "in")}
    assert hits(transfer(ALICE, BOB, "erc721", NFT)) == {
        ("m_out", "out"), ("m_all", "out"), ("m_nft", "out")}
    assert hits(transfer(BOB, CAROL)) == set()


def test_index_between_two_watched_addresses_matches_once() -> None:
    index = MonitorIndex([monitor("m", ALICE, BOB), monitor("m_in", ALICE, BOB, direction="in")])
    assert sorted((m.id, d) for m, d in index.match(transfer(ALICE, BOB))) == [
        ("m", "all"), ("m_in", "in")]


def test_index_is_case_insensitive() -> None:
    mixed = "0x52908400098527886E0F7030069857D2E4169EE7"  # EIP-55 form
    index = MonitorIndex([monitor("m", mixed, contracts=frozenset({TOKEN.upper()}))])
    assert [m.id for m, _ in index.match(transfer(BOB, mixed.lower()))] == ["m"]
    assert [m.id for m, _ in index.match(transfer(BOB, mixed.lower(), "erc20", TOKEN))] == ["m"]


def test_index_cost_does_not_depend_on_monitors() -> None:
    block = [transfer(addr(10_000_000 + i), addr(20_000_000 + i)) for i in range(200)]
    block.append(transfer(BOB, ALICE))
    small = MonitorIndex([monitor("m", ALICE)])
    # 10,000 monitors of 10 addresses each: 100,000 watched addresses
    large = MonitorIndex([monitor("m", ALICE)] + [
        monitor(f"m{i}", *(addr((1 << 100) + i * 10 + j) for j in range(10)))
        for i in range(10_000)])
    assert large.addresses == 100_001
    assert [[m.id for m, _ in small.match(t)] for t in block] == \
        [[m.id for m, _ in large.match(t)] for t in block]
    assert small.lookups == large.lookups == 2 * len(block)


async def test_index_rebuilt_only_when_monitors_change() -> None:
    store = FakeStore()
    store.put(monitor("m", ALICE), replace(monitor("x", ALICE), chain="polygon"))
    cache = IndexCache(store, "eth")
    first = await cache.current()
    assert await cache.current() is first and cache.builds == 1
    assert list(first.monitors) == ["m"]  # the other chain's monitor is not in it
    store.put(monitor("m2", BOB))
    assert set((await cache.current()).monitors) == {"m", "m2"} and cache.builds == 2


def token_log(topics: Sequence[str], data: bytes = b"") -> Log:
    return Log(TOKEN, tuple(topics), data, 3, ZERO, fake_hash("t"), 4)


def test_transfer_logs_are_read_by_topic_count() -> None:
    erc20 = log_transfer(token_log([TRANSFER_TOPIC, word(ALICE), word(BOB)], (10**21).to_bytes(32)))
    assert erc20 is not None and (erc20.category, erc20.from_, erc20.to, erc20.value,
                                  erc20.contract) == ("erc20", ALICE, BOB, 10**21, TOKEN)
    nft = log_transfer(token_log([TRANSFER_TOPIC, word(ALICE), word(BOB), word(77)]))
    assert nft is not None and (nft.category, nft.value, nft.log_index) == ("erc721", 77, 4)
    approval = "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"
    for odd in [token_log([approval, word(ALICE), word(BOB)], bytes(32)),
                token_log([TRANSFER_TOPIC, word(ALICE), word(BOB)], b""),  # no amount
                token_log([TRANSFER_TOPIC, word(ALICE)], bytes(32)),
                token_log([TRANSFER_TOPIC, "0x" + "ff" * 32, word(BOB)], bytes(32))]:
        assert log_transfer(odd) is None


def test_malformed_logs_and_receipts_are_refused() -> None:
    good = {"address": TOKEN, "topics": [TRANSFER_TOPIC], "data": "0x", "blockNumber": "0x1",
            "blockHash": ZERO, "transactionHash": ZERO, "logIndex": "0x0"}
    assert parse_logs([good], "eth_getLogs")[0].removed is False
    for bad, field_name in [({**good, "address": "0x12"}, "address"),
                            ({**good, "data": "0x123"}, "data"),
                            ({**good, "topics": "nope"}, "topics"),
                            ({**good, "logIndex": None}, "logIndex")]:
        with pytest.raises(MalformedResponse, match=rf"eth_getLogs\[0\]\.{field_name}"):
            parse_logs([bad], "eth_getLogs")
    with pytest.raises(MalformedResponse, match="list of logs"):
        parse_logs({"logs": []}, "eth_getLogs")
    receipt = {"transactionHash": ZERO, "blockHash": ZERO, "blockNumber": "0x2"}
    parsed = parse_receipt(receipt, "r")
    assert parsed is not None and parsed.status is None  # before Byzantium
    with pytest.raises(MalformedResponse, match=r"r\.status"):
        parse_receipt({**receipt, "status": True}, "r")


