"""A scripted node for the follower tests: a small chain simulated in Python and served over
HTTP (so the real EthereumClient parses every answer), which can answer errors and garbage,
claim blocks it does not have, and reorganise; `FakeStore`, a test double of the four Store
methods a follower uses (list_monitors, monitors_version, get_cursor, advance); and `Rig`,
the follower's parts wired to them (the `rig` fixture is in this folder's conftest).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from chains.bloom import bloom_masks
from chains.ethereum import EthereumClient
from monitor.config import ChainFollowConfig
from service import StoreError
from service.follow.follower import (
    ChainFollower,
    FollowerMetrics,
    StepResult,
)
from service.follow.matching import TRANSFER_TOPIC
from service.models import MatchRecord, Monitor, NewEvent, Stored
from tests.support.chain_nodes import (
    Canned,
    FrozenClock,
    Seen,
    json_answer,
)

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
                      holder: str | None = None) -> list[Stored]:
        assert len(events) == len(matches) and holder is None  # no lease: one process
        if self.fail_advances:
            self.fail_advances -= 1
            raise StoreError("disk on fire")
        ids = []
        for event, match in zip(events, matches, strict=True):
            key = event.idempotency_key
            if key is not None and key in self._keys:
                ids.append(Stored(self._keys[key], False))
                continue
            event_id = f"evt_{next(self._ids)}"
            data = json.loads(event.serialised())
            self.events.append((event_id, NewEvent(event.type, data, key)))
            self.matches.append(match)
            if key is not None:
                self._keys[key] = event_id
            ids.append(Stored(event_id, True))
        self.cursors[name] = json.dumps(state)
        self.advances.append(json.loads(self.cursors[name]))
        return ids

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e.data for _, e in self.events if e.type == kind]

    def told(self) -> list[tuple[str, str, str, int]]:
        """(kind, tx hash, monitor, block) of every event, in order."""
        return [(e.type, e.data["tx_hash"], e.data["monitor_id"], e.data["block_number"])
                for _, e in self.events]


def fake_hash(*parts: object) -> str:
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
    return Tx(fake_hash("tx", next(_tx_numbers)), frm, to, value, ok=ok)


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
    return Tx(fake_hash("tx", next(_tx_numbers)), ALICE, contract, 0, tuple(logs))


class SimChain:
    """A chain in memory, answering JSON-RPC (batches too) like geth: logs of a block asked
    by hash, receipts of canonical transactions only. `faults` replace whole HTTP answers,
    one per request, before anything is answered normally; `head_ahead` makes the node
    claim blocks it does not have yet; `lose_logs` answers the next N eth_getLogs with [];
    `forge_parent` answers the head block with a forged parent hash N times."""

    def __init__(self, chain_id: int = 1337) -> None:
        self.chain_id = chain_id
        self.canonical: list[dict[str, Any]] = []
        self.by_hash: dict[str, dict[str, Any]] = {}
        self.faults: list[Canned] = []
        self.head_ahead = 0
        self.lose_logs = 0
        self.forge_parent = 0
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
            block_hash = fake_hash("block", number, parent, self.branch)
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
            items = [bytes.fromhex(x[2:]) for lg in logs for x in (lg["address"], *lg["topics"])]
            bloom = 0
            for mask in bloom_masks(items):
                bloom |= mask
            block = {"number": hex(number), "hash": block_hash, "parentHash": parent,
                     "timestamp": hex(1_700_000_000 + number), "transactions": objects,
                     "logsBloom": f"0x{bloom:0512x}",
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
            shown = {k: v for k, v in block.items() if k not in ("logs", "status")} | {
                "transactions": txs}
            if number == self.head and self.forge_parent:
                self.forge_parent -= 1
                shown["parentHash"] = fake_hash("forged", self.forge_parent)
            return shown
        if method == "eth_getLogs":
            (query,) = params
            if self.lose_logs:
                self.lose_logs -= 1
                return []
            found = self.by_hash.get(query["blockHash"])
            return [] if found is None else [
                lg for lg in found["logs"] if lg["topics"][0] == query["topics"][0]]
        if method == "eth_getTransactionReceipt":
            for block in self.canonical:
                if params[0] in block["status"]:
                    return {"transactionHash": params[0], "blockHash": block["hash"],
                            "blockNumber": block["number"],
                            "status": "0x1" if block["status"][params[0]] else "0x0",
                            "logs": [lg for lg in block["logs"]
                                     if lg["transactionHash"] == params[0]]}
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

