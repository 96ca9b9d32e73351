"""The chain follower and the monitor index against a scripted node: a small chain simulated
in Python and served over HTTP (so the real EthereumClient parses every answer), which can
answer errors and garbage, claim blocks it does not have, and reorganise.

`FakeStore` is a test double of the four Store methods a follower uses (list_monitors,
monitors_version, get_cursor, advance); the ganache tests run on the real store.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from chains import MalformedResponse
from chains.ethereum import EthereumClient
from chains.ethereum_types import Log, parse_logs, parse_receipt
from monitor.config import ChainFollowConfig
from service import StoreError
from service.follow.follower import (
    CONFIRMED,
    DETECTED,
    MAX_SPAN,
    REVERTED,
    ChainFollower,
    FollowerMetrics,
    StepResult,
)
from service.follow.matching import TRANSFER_TOPIC, IndexCache, MonitorIndex, Transfer, log_transfer
from service.models import Category, MatchRecord, Monitor, NewEvent
from tests.support.chain_nodes import (
    Canned,
    FakeNode,
    FrozenClock,
    Seen,
    json_answer,
    text_answer,
)

pytestmark = pytest.mark.timeout(60)
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
ZERO = "0x" + "00" * 32


def addr(n: int) -> str:
    return f"0x{n:040x}"


ALICE, BOB, CAROL, TOKEN, NFT = addr(0xA11CE), addr(0xB0B), addr(0xCA401), addr(0x7), addr(0x8)


def monitor(mid: str, *addresses: str, **kw: Any) -> Monitor:
    return Monitor(id=mid, chain="eth", addresses=frozenset(addresses), endpoint_id="ep_1", **kw)


# --- test doubles ---------------------------------------------------------------------------


@dataclass
class FakeStore:
    """In-memory stand-in for the follower's four store methods. State and event data go
    through JSON as a real backend would; idempotency keys are honoured."""

    monitors: dict[str, Monitor] = field(default_factory=dict)
    version: int = 0
    cursors: dict[str, str] = field(default_factory=dict)
    events: list[tuple[str, NewEvent]] = field(default_factory=list)  # (id, event) enqueued
    matches: list[MatchRecord] = field(default_factory=list)
    advances: list[dict[str, Any]] = field(default_factory=list)  # every saved state
    fail_advances: int = 0  # the next N advance calls raise StoreError
    monitor_reads: int = 0
    _keys: dict[str, str] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def put(self, *monitors: Monitor) -> None:
        for m in monitors:
            self.monitors[m.id] = m
        self.version += 1

    def delete(self, monitor_id: str) -> None:
        del self.monitors[monitor_id]
        self.version += 1

    async def list_monitors(self, chain: str | None = None) -> list[Monitor]:
        self.monitor_reads += 1
        return [m for m in self.monitors.values() if chain is None or m.chain == chain]

    async def monitors_version(self) -> int:
        return self.version

    async def get_cursor(self, name: str) -> dict[str, Any] | None:
        saved = self.cursors.get(name)
        return None if saved is None else dict(json.loads(saved))

    async def advance(self, name: str, state: Mapping[str, Any], events: Sequence[NewEvent],
                      matches: Sequence[MatchRecord], now: datetime, *,
                      holder: str | None = None) -> list[str]:
        assert len(events) == len(matches) and holder is None  # no lease: one process
        if self.fail_advances:
            self.fail_advances -= 1
            raise StoreError("disk on fire")
        ids = []
        for event, match in zip(events, matches, strict=True):
            key = event.idempotency_key
            if key is not None and key in self._keys:
                ids.append(self._keys[key])
                continue
            event_id = f"evt_{next(self._ids)}"
            data = json.loads(event.serialised())
            self.events.append((event_id, NewEvent(event.type, data, key)))
            self.matches.append(match)
            if key is not None:
                self._keys[key] = event_id
            ids.append(event_id)
        self.cursors[name] = json.dumps(state)
        self.advances.append(json.loads(self.cursors[name]))
        return ids

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e.data for _, e in self.events if e.type == kind]

    def told(self) -> list[tuple[str, str, str, int]]:
        """(kind, tx hash, monitor, block) of every event, in order."""
        return [(e.type, e.data["tx_hash"], e.data["monitor_id"], e.data["block_number"])
                for _, e in self.events]


def _hash(*parts: object) -> str:
    return "0x" + hashlib.sha256(repr(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Tx:
    """A transaction to put in a block: a value transfer and/or Transfer logs it emits.
    The same Tx mined again (after a reorg) keeps its hash."""

    hash: str
    from_: str
    to: str | None
    value: int = 0
    logs: tuple[tuple[str, tuple[str, ...], str], ...] = ()  # (contract, topics, data)
    ok: bool = True


_tx_numbers = itertools.count(1)


def native(frm: str, to: str | None, value: int, ok: bool = True) -> Tx:
    return Tx(_hash("tx", next(_tx_numbers)), frm, to, value, ok=ok)


def word(a: str | int) -> str:
    return "0x" + f"{int(a, 16) if isinstance(a, str) else a:064x}"


def tokens(contract: str, *moves: tuple[str, str, int], erc721: bool = False) -> Tx:
    logs: list[tuple[str, tuple[str, ...], str]] = []
    for frm, to, value in moves:
        topics: tuple[str, ...] = (TRANSFER_TOPIC, word(frm), word(to))
        if erc721:
            logs.append((contract, (*topics, word(value)), "0x"))
        else:
            logs.append((contract, topics, word(value)))
    return Tx(_hash("tx", next(_tx_numbers)), ALICE, contract, 0, tuple(logs))


class SimChain:
    """A chain in memory, answering JSON-RPC (batches too) like geth: logs of a block asked
    by hash, receipts of canonical transactions only. `faults` replace whole HTTP answers,
    one per request, before anything is answered normally; `head_ahead` makes the node
    claim blocks it does not have yet."""

    def __init__(self, chain_id: int = 1337) -> None:
        self.chain_id = chain_id
        self.canonical: list[dict[str, Any]] = []
        self.by_hash: dict[str, dict[str, Any]] = {}
        self.faults: list[Canned] = []
        self.head_ahead = 0
        self.requests = 0
        self.branch = 0
        self.mine()

    @property
    def head(self) -> int:
        return len(self.canonical) - 1

    def mine(self, *txs: Tx, blocks: int = 1) -> int:
        for _ in range(blocks):
            number = len(self.canonical)
            parent = self.canonical[-1]["hash"] if self.canonical else ZERO
            block_hash = _hash("block", number, parent, self.branch)
            objects: list[dict[str, Any]] = []
            logs: list[dict[str, Any]] = []
            for tx in txs:
                objects.append({"hash": tx.hash, "from": tx.from_, "to": tx.to,
                                "value": hex(tx.value), "blockHash": block_hash,
                                "blockNumber": hex(number), "input": "0x"})
                for contract, topics, data in tx.logs:
                    logs.append({"address": contract, "topics": list(topics), "data": data,
                                 "blockNumber": hex(number), "blockHash": block_hash,
                                 "transactionHash": tx.hash, "logIndex": hex(len(logs)),
                                 "removed": False})
            block = {"number": hex(number), "hash": block_hash, "parentHash": parent,
                     "timestamp": hex(1_700_000_000 + number), "transactions": objects,
                     "logs": logs, "status": {tx.hash: tx.ok for tx in txs}}
            self.canonical.append(block)
            self.by_hash[block_hash] = block
            txs = ()
        return self.head

    def fork(self, after: int) -> None:
        """Drop the blocks after `after`; what is mined next is another branch."""
        del self.canonical[after + 1:]
        self.branch += 1

    def answer(self, method: str, params: list[Any]) -> Any:
        if method == "eth_blockNumber":
            return hex(self.head + self.head_ahead)
        if method == "eth_chainId":
            return hex(self.chain_id)
        if method == "eth_getBlockByNumber":
            number = int(params[0], 16)
            if number > self.head:
                return None
            block = self.canonical[number]
            txs = block["transactions"] if params[1] else [t["hash"] for t in
                                                           block["transactions"]]
            return {k: v for k, v in block.items() if k not in ("logs", "status")} | {
                "transactions": txs}
        if method == "eth_getLogs":
            (query,) = params
            found = self.by_hash.get(query["blockHash"])
            return [] if found is None else [
                lg for lg in found["logs"] if lg["topics"][0] == query["topics"][0]]
        if method == "eth_getTransactionReceipt":
            for block in self.canonical:
                if params[0] in block["status"]:
                    return {"transactionHash": params[0], "blockHash": block["hash"],
                            "blockNumber": block["number"],
                            "status": "0x1" if block["status"][params[0]] else "0x0"}
            return None
        raise AssertionError(f"unexpected call {method}")

    async def __call__(self, seen: Seen) -> Canned:
        self.requests += 1
        if self.faults:
            return self.faults.pop(0)

        def one(call: dict[str, Any]) -> dict[str, Any]:
            return {"jsonrpc": "2.0", "id": call["id"],
                    "result": self.answer(call["method"], call["params"])}

        body = seen.body
        return json_answer([one(c) for c in body] if isinstance(body, list) else one(body))


# --- fixtures -------------------------------------------------------------------------------


@dataclass
class Rig:
    chain: SimChain
    store: FakeStore
    client: EthereumClient
    registry: CollectorRegistry
    metrics: FollowerMetrics
    config: ChainFollowConfig

    def follower(self, **config: Any) -> ChainFollower:
        return ChainFollower("eth", replace(self.config, **config), self.client, self.store,
                             self.metrics, FrozenClock(NOW))

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, {"chain": "eth", **labels})
        return 0.0 if value is None else value


@pytest.fixture
async def rig(fake_node: FakeNode) -> AsyncIterator[Rig]:
    chain = SimChain()
    fake_node.answer("/", chain)
    registry = CollectorRegistry()
    async with aiohttp.ClientSession() as session:
        yield Rig(chain, FakeStore(), EthereumClient(session, fake_node.url, 2.0), registry,
                  FollowerMetrics.create(registry),
                  ChainFollowConfig(confirmations=2, poll_interval=0.01, start_block=1))


async def catch_up(follower: ChainFollower, steps: int = 100) -> list[StepResult]:
    """Step until the follower has processed the node's head (errors are retried)."""
    results = []
    for _ in range(steps):
        result = await follower.step()
        results.append(result)
        if not result.error and not result.behind:
            return results
    raise AssertionError(f"not caught up after {steps} steps: {results[-3:]}")


def covered(store: FakeStore) -> list[int]:
    """next_block of every saved state: the cursor's path."""
    return [state["next_block"] for state in store.advances]


# --- the index -------------------------------------------------------------------------------


def transfer(frm: str, to: str, category: Category = "native", contract: str | None = None,
             value: int = 5) -> Transfer:
    log_index = None if category == "native" else 0
    return Transfer(category, _hash(frm, to, value), log_index, 10, ZERO, frm, to, contract,
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


def _log(topics: Sequence[str], data: bytes = b"") -> Log:
    return Log(TOKEN, tuple(topics), data, 3, ZERO, _hash("t"), 4)


def test_transfer_logs_are_read_by_topic_count() -> None:
    erc20 = log_transfer(_log([TRANSFER_TOPIC, word(ALICE), word(BOB)], (10**21).to_bytes(32)))
    assert erc20 is not None and (erc20.category, erc20.from_, erc20.to, erc20.value,
                                  erc20.contract) == ("erc20", ALICE, BOB, 10**21, TOKEN)
    nft = log_transfer(_log([TRANSFER_TOPIC, word(ALICE), word(BOB), word(77)]))
    assert nft is not None and (nft.category, nft.value, nft.log_index) == ("erc721", 77, 4)
    approval = "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"
    for odd in [_log([approval, word(ALICE), word(BOB)], bytes(32)),
                _log([TRANSFER_TOPIC, word(ALICE), word(BOB)], b""),  # no amount
                _log([TRANSFER_TOPIC, word(ALICE)], bytes(32)),
                _log([TRANSFER_TOPIC, "0x" + "ff" * 32, word(BOB)], bytes(32))]:
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


# --- the follower ---------------------------------------------------------------------------


async def test_detected_then_confirmed_with_the_payload(rig: Rig) -> None:
    rig.store.put(monitor("m1", ALICE, tags=("hot",)), monitor("m5", BOB, confirmations=5))
    pay = native(BOB, ALICE, 10**18)
    coin = tokens(TOKEN, (ALICE, CAROL, 7))
    block = rig.chain.mine(pay, coin)
    follower = rig.follower()
    await catch_up(follower)
    assert rig.store.told() == [(DETECTED, pay.hash, "m5", block),  # from, then to
                                (DETECTED, pay.hash, "m1", block),
                                (DETECTED, coin.hash, "m1", block)]
    rig.chain.mine(blocks=2)
    await catch_up(follower)
    assert [(k, m) for k, _, m, _ in rig.store.told()[3:]] == [(CONFIRMED, "m1")] * 2
    rig.chain.mine(blocks=3)
    await catch_up(follower)
    assert [(k, m) for k, _, m, _ in rig.store.told()[5:]] == [(CONFIRMED, "m5")]
    detected, confirmed = rig.store.of(DETECTED)[1], rig.store.of(CONFIRMED)[0]
    block_hash = rig.chain.canonical[block]["hash"]
    assert detected == {
        "chain": "eth", "monitor_id": "m1", "tags": ["hot"], "direction": "in",
        "category": "native", "tx_hash": pay.hash, "block_number": block,
        "block_hash": block_hash, "log_index": None, "from": BOB, "to": ALICE,
        "contract": None, "amount": str(10**18), "token_id": None, "confirmations": 2}
    assert confirmed == detected
    erc20 = rig.store.of(DETECTED)[2]
    assert (erc20["category"], erc20["direction"], erc20["contract"], erc20["amount"],
            erc20["log_index"]) == ("erc20", "out", TOKEN, "7", 0)
    keys = [e.idempotency_key for _, e in rig.store.events]
    assert keys[1] == f"eth:{pay.hash}:native:m1:transfer.detected"
    assert keys[-1] == f"eth:{pay.hash}:native:m5:transfer.confirmed"
    assert rig.store.matches[1] == MatchRecord("m1", DETECTED, pay.hash, (ALICE,), block)
    assert rig.metric("crypitor_follower_events_total", kind="detected") == 3
    assert rig.metric("crypitor_follower_events_total", kind="confirmed") == 3
    assert rig.metric("crypitor_follower_processed_block") == rig.chain.head
    assert rig.metric("crypitor_follower_lag_blocks") == 0


async def test_mixed_case_from_the_node_and_failed_transactions(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    shouting = "0x" + ALICE[2:].upper()
    ok, failed = native(BOB, shouting, 5), native(BOB, ALICE, 6, ok=False)
    rig.chain.mine(ok, failed, native(BOB, CAROL, 7), native(ALICE, BOB, 0))
    await catch_up(rig.follower())
    assert [d["tx_hash"] for d in rig.store.of(DETECTED)] == [ok.hash]
    assert rig.store.of(DETECTED)[0]["to"] == ALICE


async def test_zero_confirmations_and_disabled_or_deleted_monitors(rig: Rig) -> None:
    rig.store.put(monitor("m0", ALICE, confirmations=0), monitor("off", ALICE, enabled=False),
                  monitor("gone", ALICE))
    pay = native(BOB, ALICE, 5)
    rig.chain.mine(pay)
    follower = rig.follower()
    await catch_up(follower)
    assert [(k, m) for k, _, m, _ in rig.store.told()] == [
        (DETECTED, "m0"), (DETECTED, "gone"), (CONFIRMED, "m0")]
    rig.store.delete("gone")  # deleted before its confirmations: it hears nothing more
    rig.chain.mine(blocks=3)
    await catch_up(follower)
    assert len(rig.store.events) == 3 and rig.store.advances[-1]["pending"] == []


async def test_first_start_at_the_head_and_saved_at_once(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    rig.chain.mine(native(BOB, ALICE, 5))
    head = rig.chain.mine(blocks=3)
    follower = rig.follower(start_block=None)
    result = await follower.step()
    assert rig.store.advances[0] == {"version": 1, "next_block": head, "blocks": [],
                                     "pending": [], "recheck_until": None, "reverted": []}
    assert result.next_block == head + 1 and rig.store.events == []  # block `head` processed


async def test_errors_and_garbage_are_retried_and_nothing_is_skipped(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    pays = [native(BOB, ALICE, i + 1) for i in range(6)]
    for pay in pays[:3]:
        rig.chain.mine(pay)
    follower = rig.follower()
    await catch_up(follower)
    rig.chain.faults = [
        text_answer("<h1>502 Bad Gateway</h1>", status=502),
        text_answer("<html>rate limited</html>"),
        json_answer({"jsonrpc": "2.0", "id": 1,
                     "error": {"code": -32005, "message": "limit exceeded"}}),
        json_answer({"jsonrpc": "2.0", "id": 1, "result": "0xnothex"}),
        json_answer({"jsonrpc": "2.0", "id": 1, "result": None}),  # no head at all
    ]
    for pay in pays[3:]:
        rig.chain.mine(pay)
    saved = len(rig.store.advances)
    results = [await follower.step() for _ in range(5)]
    assert all(r.error for r in results) and len(rig.store.advances) == saved
    # then a node whose head runs ahead of its blocks (a load balancer): retried, not skipped
    rig.chain.head_ahead = 2
    for _ in range(10):  # the failures above shrank the batch: a few steps to reach the head
        result = await follower.step()
        if result.error:
            break
    assert result.error_kind == "missing_block"
    assert covered(rig.store)[-1] == rig.chain.head + 1  # up to the real head, not beyond
    rig.chain.head_ahead = 0
    await catch_up(follower)
    assert [d["tx_hash"] for d in rig.store.of(DETECTED)] == [p.hash for p in pays]
    path = covered(rig.store)
    assert path == sorted(path) and path[-1] == rig.chain.head + 1
    errors = {k: rig.metric("crypitor_follower_rpc_errors_total", kind=k)
              for k in ("http_status", "malformed", "rpc_error", "missing_block")}
    assert errors == {"http_status": 1, "malformed": 3, "rpc_error": 1, "missing_block": 1}


async def test_garbage_inside_a_batch_is_an_error_too(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    rig.chain.mine(native(BOB, ALICE, 5))
    follower = rig.follower()
    real = rig.chain.answer

    def broken(method: str, params: list[Any]) -> Any:
        answer = real(method, params)
        if method == "eth_getBlockByNumber" and answer is not None:
            answer["transactions"] = [{"hash": "0x12"}]
        return answer

    rig.chain.answer = broken  # type: ignore[method-assign]
    result = await follower.step()
    assert result.error_kind == "malformed" and rig.store.events == []
    rig.chain.answer = real  # type: ignore[method-assign]
    await catch_up(follower)
    assert len(rig.store.of(DETECTED)) == 1


async def test_run_backs_off_and_recovers(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    pay = native(BOB, ALICE, 5)
    rig.chain.mine(pay)
    rig.chain.faults = [text_answer("down", status=503)] * 4
    task = asyncio.create_task(rig.follower().run())
    try:
        async with asyncio.timeout(20):
            while not rig.store.of(DETECTED):
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert rig.metric("crypitor_follower_rpc_errors_total", kind="http_status") == 4


async def test_catches_up_in_bounded_contiguous_batches(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    pays = [native(BOB, ALICE, i + 1) for i in range(120)]
    for pay in pays:
        rig.chain.mine(pay)
    follower = rig.follower()
    await catch_up(follower)
    path = covered(rig.store)
    assert path[0] == 1 and all(0 < b - a <= MAX_SPAN for a, b in itertools.pairwise(path))
    assert [d["tx_hash"] for d in rig.store.of(DETECTED)] == [p.hash for p in pays]


async def test_store_failure_does_not_move_the_cursor(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    follower = rig.follower()
    await catch_up(follower)
    pay = native(BOB, ALICE, 5)
    rig.chain.mine(pay)
    rig.store.fail_advances = 2
    assert (await follower.step()).error_kind == "store"
    assert (await follower.step()).error_kind == "store"
    await catch_up(follower)
    assert [d["tx_hash"] for d in rig.store.of(DETECTED)] == [pay.hash]
    assert rig.metric("crypitor_follower_store_errors_total") == 2


async def test_restart_resumes_with_pending_confirmations(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    first = rig.follower()
    a = native(BOB, ALICE, 1)
    rig.chain.mine(a)
    await catch_up(first)
    b = native(BOB, ALICE, 2)
    rig.chain.mine(b, blocks=1)
    rig.chain.mine(blocks=1)
    second = rig.follower(start_block=None)  # the cursor wins over the config
    await catch_up(second)
    rig.chain.mine(blocks=3)
    await catch_up(second)
    assert sorted((k, tx) for k, tx, _, _ in rig.store.told()) == sorted(
        [(DETECTED, a.hash), (DETECTED, b.hash), (CONFIRMED, a.hash), (CONFIRMED, b.hash)])
    third = rig.follower()
    await catch_up(third)
    assert len(rig.store.events) == 4


async def test_reorg_reverts_moves_and_confirms_once(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    follower = rig.follower(confirmations=3)
    base = rig.chain.mine(blocks=2)
    await catch_up(follower)
    orphan, moved, stays = native(BOB, ALICE, 1), native(BOB, ALICE, 2), native(BOB, ALICE, 3)
    rig.chain.mine(stays)
    rig.chain.mine(orphan, moved)
    await catch_up(follower)
    assert len(rig.store.of(DETECTED)) == 3
    rig.chain.fork(after=base + 1)  # the block with `orphan` and `moved` is replaced
    rig.chain.mine(blocks=1)
    new_block = rig.chain.mine(moved)
    rig.chain.mine(blocks=1)
    results = await catch_up(follower)
    assert any(r.reorg_depth == 1 for r in results)
    assert rig.metric("crypitor_follower_reorgs_total") == 1
    assert [tx for k, tx, _, _ in rig.store.told() if k == REVERTED] == [orphan.hash]
    rig.chain.mine(blocks=5)
    await catch_up(follower)
    told = rig.store.told()
    confirmed = [(tx, block) for k, tx, _, block in told if k == CONFIRMED]
    assert sorted(confirmed) == sorted([(stays.hash, base + 1), (moved.hash, new_block)])
    assert (REVERTED, orphan.hash) in [(k, tx) for k, tx, _, _ in told]
    assert [k for k, tx, _, _ in told if tx == moved.hash] == [DETECTED, CONFIRMED]
    final = next(d for d in rig.store.of(CONFIRMED) if d["tx_hash"] == moved.hash)
    assert final["block_hash"] == rig.chain.canonical[new_block]["hash"]


async def test_a_token_transfer_moved_to_another_log_index_is_the_same_transfer(
        rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    follower = rig.follower(confirmations=2)
    base = rig.chain.mine(blocks=1)
    await catch_up(follower)
    coin = tokens(TOKEN, (BOB, CAROL, 1), (BOB, ALICE, 2))  # ours is the tx's second log
    rig.chain.mine(coin)
    await catch_up(follower)
    rig.chain.fork(after=base)
    rig.chain.mine(tokens(NFT, (BOB, CAROL, 9)), coin)  # now behind another tx's log
    rig.chain.mine(blocks=2)
    await catch_up(follower)
    assert [k for k, _, _, _ in rig.store.told()] == [DETECTED, CONFIRMED]
    detected, confirmed = rig.store.of(DETECTED)[0], rig.store.of(CONFIRMED)[0]
    assert (detected["log_index"], confirmed["log_index"]) == (1, 2)
    assert confirmed["block_hash"] == rig.chain.canonical[base + 1]["hash"]


async def test_a_reverted_transfer_mined_again_is_detected_again(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    follower = rig.follower(confirmations=2)
    base = rig.chain.mine(blocks=1)
    await catch_up(follower)
    pay = native(BOB, ALICE, 1)
    rig.chain.mine(pay)
    await catch_up(follower)
    rig.chain.fork(after=base)
    rig.chain.mine(blocks=2)
    await catch_up(follower)
    rig.chain.mine(pay)  # back from the mempool, later than the old branch reached
    rig.chain.mine(blocks=2)
    await catch_up(follower)
    assert [k for k, _, _, _ in rig.store.told()] == [DETECTED, REVERTED, DETECTED, CONFIRMED]
    keys = [e.idempotency_key or "" for _, e in rig.store.events]
    assert keys[2].endswith("transfer.detected:2") and keys[3].endswith("transfer.confirmed")


async def test_reorg_found_after_a_restart_and_a_node_that_went_back(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    base = rig.chain.mine(blocks=1)
    pay = native(BOB, ALICE, 1)
    rig.chain.mine(pay)
    await catch_up(rig.follower())
    rig.chain.fork(after=base)  # the node is now behind the cursor: nothing to do yet
    follower = rig.follower()
    assert not (await follower.step()).error and len(rig.store.events) == 1
    rig.chain.mine(blocks=3)
    await catch_up(follower)
    assert [k for k, _, _, _ in rig.store.told()] == [DETECTED, REVERTED]


async def test_wrong_chain_is_refused(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    rig.chain.mine(native(BOB, ALICE, 1))
    follower = rig.follower(chain_id=1)
    result = await follower.step()
    assert result.error_kind == "chain_id" and "1337" in result.error
    assert rig.store.advances == []
    assert rig.metric("crypitor_follower_rpc_errors_total", kind="chain_id") == 1


async def test_a_reorg_deeper_than_the_window_resumes_at_its_start(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    follower = rig.follower(confirmations=2)
    rig.chain.mine(blocks=80)
    await catch_up(follower)
    kept = rig.store.advances[-1]["blocks"]
    saved = len(rig.store.advances)
    rig.chain.fork(after=0)  # every block kept is replaced
    rig.chain.mine(blocks=90)
    results = await catch_up(follower)
    assert any(r.reorg_depth == len(kept) for r in results)
    oldest = kept[0][0]  # what came before it is taken as common: nothing more is known
    assert rig.store.advances[saved]["next_block"] == oldest + MAX_SPAN
    assert covered(rig.store)[-1] == rig.chain.head + 1
    assert rig.store.advances[-1]["blocks"][-1][1] == rig.chain.canonical[-1]["hash"]
