"""The chain follower on a real ganache node and the real SQLite store: native transfers in
every direction, Transfer logs from contracts assembled by hand (tests/support/contracts.py),
confirmations, a reorg made with evm_snapshot / evm_revert and delivered as a signed webhook,
and a follower process killed with SIGKILL while the chain keeps moving.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from standardwebhooks.webhooks import Webhook

from chains.bloom import address_topic, bloom_mask, may_contain
from chains.ethereum import EthereumClient
from chains.ethereum_types import transactions_of
from core.leases import Lease
from monitor.config import ChainFollowConfig, ServiceSection
from service.app import Service
from service.follow import CursorLeases
from service.follow.follower import CONFIRMED, DETECTED, REVERTED, ChainFollower, FollowerMetrics
from service.models import Monitor
from service.store.sqlite import SqliteStore
from tests.support import contracts
from tests.support.chain_nodes import GanacheFactory, GanacheNode
from tests.support.net import free_port
from tests.support.web import serve

pytestmark = pytest.mark.timeout(120)
WAIT = 30.0  # seconds any awaited event may take on a loaded machine
EIP55 = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # the EIP-55 test vector, mixed case


def fresh() -> str:
    return "0x" + secrets.token_hex(20)


@pytest.fixture(scope="module")
def node(ganache_factory: GanacheFactory) -> GanacheNode:
    """A node of this module's own: reverts and many blocks must not disturb other tests."""
    (started,) = ganache_factory.start()
    return started


@dataclass
class Rig:
    node: GanacheNode
    store: SqliteStore
    client: EthereumClient
    accounts: list[str]
    start: int  # this test's first block
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.metrics = FollowerMetrics.create(self.registry)

    def follower(self, lease: Lease | None = None, **config: Any) -> ChainFollower:
        settings = ChainFollowConfig(confirmations=2, poll_interval=0.02, start_block=self.start)
        return ChainFollower("eth", replace(settings, **config), self.client, self.store,
                             self.metrics, lease=lease)

    async def watch(self, monitor_id: str, *addresses: str, **kw: Any) -> Monitor:
        m = Monitor(id=monitor_id, chain="eth", addresses=frozenset(addresses),
                    endpoint_id=kw.pop("endpoint_id", "ep_none"), **kw)
        await self.store.put_monitor(m)
        return m

    async def history(self, monitor_id: str) -> list[dict[str, Any]]:
        """The monitor's events, oldest first, each its data plus `kind`."""
        found = await self.store.monitor_events(monitor_id, limit=1000)
        return [{**e.data, "kind": e.event_type} for e in reversed(found)]

    async def told(self, monitor_id: str) -> list[tuple[str, str]]:
        return [(e["kind"], e["tx_hash"]) for e in await self.history(monitor_id)]

    async def processed(self, block: int) -> None:
        """Wait until the follower has durably processed `block`."""
        async with asyncio.timeout(WAIT):
            while (self.registry.get_sample_value("crypitor_follower_processed_block",
                                                  {"chain": "eth"}) or -1) < block:
                await asyncio.sleep(0.02)

    async def pay(self, to: str, wei: int = 1000, sender: int = 0) -> str:
        return await contracts.pay(self.node, self.accounts[sender], to, wei)


@pytest.fixture
async def rig(node: GanacheNode, tmp_path: Path) -> AsyncIterator[Rig]:
    store = SqliteStore(tmp_path / "service.sqlite3")
    await store.open()
    try:
        async with aiohttp.ClientSession() as session:
            yield Rig(node, store, EthereumClient(session, node.url, 5.0),
                      await contracts.accounts(node), await node.head() + 1)
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def running(follower: ChainFollower) -> AsyncIterator[ChainFollower]:
    task = asyncio.create_task(follower.run())
    try:
        yield follower
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_client_reads_blocks_logs_and_receipts(rig: Rig) -> None:
    a0, x, y = rig.accounts[0], fresh(), fresh()
    token = await contracts.erc20_like(rig.node, a0)
    paid = await rig.pay(x, 77)
    emitted = await token.emit(a0, [(x, y, 5), (y, x, 6)])
    head = await rig.node.head()
    paid_block, block = await rig.client.get_blocks([head - 1, head], full_transactions=True)
    assert paid_block is not None and block is not None
    (tx,) = transactions_of(paid_block)
    assert (tx.hash, tx.from_, tx.to, tx.value) == (paid, a0, x, 77)
    by_hash, none = await rig.client.get_logs_of_blocks([block.hash, paid_block.hash],
                                                        [contracts.TRANSFER_TOPIC])
    assert none == () and [lg.log_index for lg in by_hash] == [0, 1]
    first = by_hash[0]
    assert (first.tx_hash, first.address, first.block_hash, first.data) == (
        emitted, token.address, block.hash, (5).to_bytes(32))
    assert first.topics == (contracts.TRANSFER_TOPIC, "0x" + contracts.word(x),
                            "0x" + contracts.word(y))
    receipts = await rig.client.get_receipts([paid, emitted, "0x" + "11" * 32])
    assert [(r.tx_hash, r.status) if r else None for r in receipts] == [
        (paid, True), (emitted, True), None]
    paid_receipt, emitted_receipt, _ = receipts
    assert paid_receipt is not None and paid_receipt.logs == ()
    assert emitted_receipt is not None and emitted_receipt.logs == by_hash
    # the node's own logs bloom holds what our masks say a Transfer log sets, and only that
    assert block.logs_bloom is not None and paid_block.logs_bloom == 0
    for item in (bytes.fromhex(token.address[2:]), bytes.fromhex(contracts.TRANSFER_TOPIC[2:]),
                 address_topic(x), address_topic(y)):
        assert may_contain(block.logs_bloom, bloom_mask(item))
    assert not may_contain(block.logs_bloom, bloom_mask(address_topic(fresh())))
    assert block.logs_bloom.bit_count() <= 4 * 3  # four items, three bits each


async def test_native_in_out_all_and_a_mixed_case_address(rig: Rig) -> None:
    w, a0, a1 = fresh(), rig.accounts[0], rig.accounts[1]
    await rig.watch("m_in", w, direction="in")
    await rig.watch("m_out", a1, direction="out")
    await rig.watch("m_all", w, a1)
    await rig.watch("m_case", EIP55)  # as a customer types it
    async with running(rig.follower()):
        t1 = await rig.pay(w, sender=1)  # a1 → w
        t2 = await rig.pay(w)  # a0 → w
        t3 = await rig.pay(a0, sender=1)  # a1 → a0
        t4 = await rig.pay(EIP55.lower())
        t5 = await rig.pay(EIP55)
        await rig.processed(await rig.node.head())

    async def sides(mid: str) -> set[tuple[str, str]]:
        return {(e["tx_hash"], e["direction"]) for e in await rig.history(mid)
                if e["kind"] == DETECTED}

    assert await sides("m_in") == {(t1, "in"), (t2, "in")}
    assert await sides("m_out") == {(t1, "out"), (t3, "out")}
    assert await sides("m_all") == {(t1, "all"), (t2, "in"), (t3, "out")}
    assert await sides("m_case") == {(t4, "in"), (t5, "in")}
    (first,) = [e for e in await rig.history("m_in") if e["tx_hash"] == t2
                and e["kind"] == DETECTED]
    assert (first["from"], first["to"], first["amount"], first["category"],
            first["log_index"], first["contract"]) == (a0, w, "1000", "native", None, None)


async def test_erc20_and_erc721_logs_and_the_contract_allow_list(rig: Rig) -> None:
    a0, w, x = rig.accounts[0], fresh(), fresh()
    allowed = await contracts.erc20_like(rig.node, a0)
    other = await contracts.erc20_like(rig.node, a0)
    nft = await contracts.erc721_like(rig.node, a0)
    await rig.watch("m_any", w)
    await rig.watch("m_allow", w, contracts=frozenset({allowed.address}))
    await rig.watch("m_nft", w, native=False, erc20=False)
    await rig.watch("m_native", w, erc20=False, erc721=False)
    async with running(rig.follower()):
        t_in = await allowed.emit(a0, [(x, w, 5 * 10**18)])
        t_out = await other.emit(a0, [(w, x, 6), (x, fresh(), 7)])  # second log unwatched
        t_nft = await nft.emit(a0, [(x, w, 42)])
        await rig.processed(await rig.node.head())
    detected = [e for e in await rig.history("m_any") if e["kind"] == DETECTED]
    assert [(e["tx_hash"], e["category"], e["direction"]) for e in detected] == [
        (t_in, "erc20", "in"), (t_out, "erc20", "out"), (t_nft, "erc721", "in")]
    erc20, _, erc721 = detected
    assert (erc20["contract"], erc20["from"], erc20["to"], erc20["amount"],
            erc20["token_id"], erc20["log_index"]) == (allowed.address, x, w,
                                                       str(5 * 10**18), None, 0)
    assert (erc721["contract"], erc721["token_id"], erc721["amount"]) == (nft.address, "42",
                                                                          None)
    assert [tx for k, tx in await rig.told("m_allow") if k == DETECTED] == [t_in]
    assert [tx for k, tx in await rig.told("m_nft") if k == DETECTED] == [t_nft]
    assert await rig.told("m_native") == []


async def test_detected_then_confirmed_after_n_blocks(rig: Rig) -> None:
    w = fresh()
    await rig.watch("m", w)  # the chain's 3 confirmations
    await rig.watch("m5", w, confirmations=5)
    async with running(rig.follower(confirmations=3)):
        tx = await rig.pay(w)
        block = await rig.node.head()
        await rig.processed(block)
        assert await rig.told("m") == [(DETECTED, tx)]
        await rig.node.mine(2)
        await rig.processed(block + 2)
        assert await rig.told("m") == [(DETECTED, tx)]
        await rig.node.mine(1)
        await rig.processed(block + 3)
        assert await rig.told("m") == [(DETECTED, tx), (CONFIRMED, tx)]
        assert await rig.told("m5") == [(DETECTED, tx)]
        await rig.node.mine(2)
        await rig.processed(block + 5)
    assert await rig.told("m5") == [(DETECTED, tx), (CONFIRMED, tx)]
    confirmed = (await rig.history("m"))[1]
    assert confirmed["block_number"] == block and confirmed["confirmations"] == 3


async def test_nothing_for_unwatched_disabled_or_failed(rig: Rig) -> None:
    a0, off, w = rig.accounts[0], fresh(), fresh()
    refuses = await contracts.reverting(rig.node, a0)
    await rig.watch("m_off", off, enabled=False)
    await rig.watch("m", w, refuses)
    async with running(rig.follower(confirmations=1)):
        await rig.pay(off)
        await rig.pay(fresh())
        failed = await contracts.send(rig.node, {"from": a0, "to": refuses, "value": hex(5),
                                                 "gas": hex(100_000)})
        assert (await contracts.receipt(rig.node, failed))["status"] == "0x0"
        sentinel = await rig.pay(w)
        await rig.node.mine(1)
        await rig.processed(await rig.node.head())
    assert await rig.told("m") == [(DETECTED, sentinel), (CONFIRMED, sentinel)]
    assert await rig.told("m_off") == []


@dataclass
class Sink:
    url: str = ""
    hits: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append((dict(request.headers), await request.read()))
        return web.Response(text="thanks")

    def types(self, secret: str) -> list[tuple[str, str]]:
        """(type, tx hash) of each delivery, every signature checked."""
        bodies = [Webhook(secret).verify(body, headers) for headers, body in self.hits]
        return [(b["type"], b["data"]["tx_hash"]) for b in bodies]


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = Sink()
    app = web.Application()
    app.router.add_post("/hook", s.handle)
    async with serve(app) as base:
        s.url = f"{base}/hook"
        yield s


async def test_reorg_delivers_reverted_and_never_confirms_the_orphan(
        rig: Rig, sink: Sink, tmp_path: Path) -> None:
    key = "reorg-test-key"
    listen = f"127.0.0.1:{free_port()}"
    svc = Service(ServiceSection(listen=listen, api_keys=(key,), allow_private_targets=True,
                                 retry_schedule=(0.2, 0.2, 0.2)), tmp_path / "svc")
    await svc.start()
    try:
        async with aiohttp.ClientSession() as http, http.post(
                f"http://{listen}/v1/endpoints", json={"url": sink.url},
                headers={"Authorization": f"Bearer {key}"}) as resp:
            assert resp.status == 201
            endpoint = await resp.json()
        w = fresh()
        await svc.store.put_monitor(Monitor("m", "eth", frozenset({w}), endpoint["id"]))
        assert svc.dispatcher is not None
        follower = ChainFollower("eth", ChainFollowConfig(confirmations=3, poll_interval=0.02,
                                                          start_block=rig.start),
                                 rig.client, svc.store, rig.metrics, wake=svc.dispatcher.wake)
        async with running(follower):
            snapshot = await rig.node.rpc("evm_snapshot")
            orphan = await rig.pay(w, 111)
            orphan_block = await rig.node.head()
            await rig.processed(orphan_block)
            assert await rig.node.rpc("evm_revert", [snapshot]) is True
            await rig.node.mine(2)  # the other branch, past the orphan's block
            kept = await rig.pay(w, 222)
            await rig.node.mine(4)
            await rig.processed(await rig.node.head())
            async with asyncio.timeout(WAIT):
                while len(sink.hits) < 4:
                    await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # anything more that would arrive (nothing should)
        assert sorted(sink.types(endpoint["secret"])) == sorted([
            (DETECTED, orphan), (REVERTED, orphan), (DETECTED, kept), (CONFIRMED, kept)])
        assert rig.registry.get_sample_value("crypitor_follower_reorgs_total",
                                             {"chain": "eth"}) == 1
    finally:
        await svc.stop()


async def test_a_follower_that_lost_its_lease_unnoticed_writes_nothing_and_stands_by(
        rig: Rig) -> None:
    """Another process took the chain over while this one was paused (its lease ran out):
    its next step is refused by the store's fence, it forgets its cursor, and it follows
    again, from the cursor the other left, only once it holds the lease."""
    w = fresh()
    await rig.watch("m", w)
    lease = Lease(CursorLeases(rig.store), "chain:eth", "chain eth", ttl=30)
    follower = rig.follower(lease)
    assert await lease.renew()
    first = await follower.step()  # first start: the cursor is saved at the start block
    saved = await rig.store.get_cursor("chain:eth")
    assert not first.error and saved is not None
    # the pause: our lease runs out, another process takes the chain and tells t1
    await rig.store.let_go_cursor("chain:eth", lease.holder)
    assert await rig.store.hold_cursor("chain:eth", "other-process", 30)
    await rig.pay(w)  # t1
    moved_on = {**saved, "next_block": await rig.node.head() + 1}
    await rig.store.advance("chain:eth", moved_on, [], [], datetime.now(UTC),
                            holder="other-process")
    refused = await follower.step()
    assert not refused.error and not holds(lease)
    assert await rig.store.get_cursor("chain:eth") == moved_on  # untouched by us
    assert await rig.told("m") == []
    # the other process stops cleanly; ours takes over from where the other left it
    await rig.store.let_go_cursor("chain:eth", "other-process")
    t2 = await rig.pay(w)
    async with running(follower):
        await rig.processed(await rig.node.head())
        assert rig.registry.get_sample_value("crypitor_follower_leader",
                                             {"chain": "eth"}) == 1
    assert not holds(lease)  # run() let go when it was cancelled
    assert await rig.told("m") == [(DETECTED, t2)]  # t1 was the other process's to tell


def holds(lease: Lease) -> bool:
    return lease.held


# --- kill -9 while the chain keeps moving ---------------------------------------------------

CHILD = """
import asyncio, sys
from pathlib import Path
import aiohttp
from prometheus_client import CollectorRegistry
from chains.ethereum import EthereumClient
from chains.ethereum_types import transactions_of
from monitor.config import ChainFollowConfig
from service.follow import ChainFollower
from service.metrics import FollowerMetrics
from service.store.sqlite import SqliteStore

class Reporting(SqliteStore):
    async def advance(self, name, state, events, matches, now, *, holder=None):
        ids = await super().advance(name, state, events, matches, now, holder=holder)
        print(state["next_block"] - 1, flush=True)  # durably processed up to here
        return ids

async def main(url: str, path: str, start: str) -> None:
    store = Reporting(Path(path))
    await store.open()
    async with aiohttp.ClientSession() as session:
        config = ChainFollowConfig(confirmations=3, poll_interval=0.02, start_block=int(start))
        await ChainFollower("eth", config, EthereumClient(session, url, 5.0), store,
                            FollowerMetrics.create(CollectorRegistry())).run()

asyncio.run(main(*sys.argv[1:]))
"""


class FollowerProcess:
    """The follower in a process of its own, reporting each block it has processed."""

    def __init__(self, node: GanacheNode, path: Path, start: int, log: Path) -> None:
        self.args = [sys.executable, "-c", CHILD, node.url, str(path), str(start)]
        self.log = log
        self.processed = -1
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        with self.log.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.args, stdout=asyncio.subprocess.PIPE, stderr=err,
                cwd=Path(__file__).resolve().parents[3])
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.processed = int(line)

    def signal(self, number: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(number)

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def reached(self, block: int) -> None:
        async with asyncio.timeout(WAIT):
            while self.processed < block:
                assert self.proc is not None and self.proc.returncode is None, \
                    f"follower process died: see {self.log}"
                await asyncio.sleep(0.02)


@pytest.fixture
def processes() -> Iterator[list[FollowerProcess]]:
    started: list[FollowerProcess] = []
    yield started
    for p in started:  # a failed test must not leave a follower behind
        if p.proc is not None and p.proc.returncode is None:
            p.proc.kill()


async def test_kill_9_and_restart_while_the_chain_moves(rig: Rig, tmp_path: Path,
                                                        processes: list[FollowerProcess]) -> None:
    w = fresh()
    await rig.watch("m", w)
    await rig.store.close()  # the store is one process's at a time (a file lock)
    path = rig.store.path

    async def launch() -> FollowerProcess:
        p = FollowerProcess(rig.node, path, rig.start, tmp_path / "follower.log")
        processes.append(p)
        await p.start()
        return p

    current = await launch()
    paid: list[str] = []
    kills: list[tuple[int, int]] = []  # (processed, head) when killed
    for i in range(36):
        paid.append(await rig.pay(w, 1 + i))
        if i % 4 == 0:
            await rig.node.mine(1)
        if i in (8, 20):  # SIGKILL in the middle of a catch-up; the chain goes on without it
            await current.reached(rig.start + 3)
            current.signal(signal.SIGSTOP)  # so that it has 300 blocks to catch up on
            paid.append(await rig.pay(w, 500 + i))
            head = await rig.node.mine(300)
            before = current.processed
            current.signal(signal.SIGCONT)
            await current.reached(before + 1)
            await current.kill()
            kills.append((current.processed, head))
            for j in range(3):
                paid.append(await rig.pay(w, 1000 + i * 10 + j))
            current = await launch()
        await asyncio.sleep(0.01)
    await rig.node.mine(3)  # the last payment's confirmations
    await current.reached(await rig.node.head())
    await current.kill()
    await rig.store.open()
    assert all(processed < head for processed, head in kills), kills  # killed while behind
    told = Counter(await rig.told("m"))
    assert set(told.values()) == {1}, [k for k, n in told.items() if n > 1]
    assert set(told) == {(kind, tx) for tx in paid for kind in (DETECTED, CONFIRMED)}
    state = await rig.store.get_cursor("chain:eth")
    assert state is not None and state["pending"] == [] and json.dumps(state)
