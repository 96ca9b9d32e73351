"""Chain follower throughput and detection latency, on a local ganache chain.

1. Blocks per second one follower processes (reading each block with its transactions and
   its Transfer logs, matching, and storing cursor + events in SQLite) over a chain
   pre-filled with blocks full of transfers, with 1, 10,000 and 100,000 watched addresses.
   The same two transfers per block match in every case, so the ratio shows only what the
   watched set costs (goal: 100,000 addresses at least 0.8x the speed of 1). Also the
   follower's own CPU per block (ganache runs in another process).
2. Time from a transaction being mined (on a fresh ganache, which mines inside
   eth_sendTransaction; "mined" is when the block first shows as head to a 2 ms poller, or
   when the call returned if that is sooner) to its `transfer.detected` event accepted in
   the store, and to its signed webhook arriving at a local sink through the real delivery
   service (Service, with the follower wired to its store and its dispatcher's wake-up),
   per poll interval: it is about half the interval plus one step.

    .venv/bin/python -m bench.follower [--blocks 200] [--native 40] [--logs 200] [--runs 5]
                                       [--polls 0.1,2] [--samples 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import statistics
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from bench.procs import ROOT, stop, wait_http
from chains.ethereum import EthereumClient
from monitor.config import ChainFollowConfig, ServiceSection
from service.app import Service
from service.follow.follower import DETECTED, ChainFollower, FollowerMetrics
from service.models import MatchRecord, Monitor, NewEvent, Stored
from service.store.sqlite import SqliteStore
from tests.support import contracts
from tests.support.net import free_port

GANACHE = ROOT / "node_modules" / ".bin" / "ganache"
PER_MONITOR = 1000  # addresses per monitor when building large watched sets
CASES = (1, 10_000, 100_000)
GOAL = 0.8


def step(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


class Node:
    def __init__(self, url: str) -> None:
        self.url = url
        self.session: aiohttp.ClientSession | None = None

    async def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        assert self.session is not None
        payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
        async with self.session.post(self.url, json=payload) as resp:
            answer = await resp.json()
        if "result" not in answer:
            raise RuntimeError(f"{method}: {answer}")
        return answer["result"]


@contextlib.contextmanager
def ganache() -> Iterator[str]:
    if not GANACHE.exists():
        raise SystemExit(f"ganache is not installed at {GANACHE}: run `npm ci` in {ROOT}")
    port = free_port()
    proc = subprocess.Popen(
        [str(GANACHE), "--server.host", "127.0.0.1", "--server.port", str(port),
         "--wallet.deterministic", "--logging.quiet", "--server.ws", "false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_rpc(url)
        yield url
    finally:
        stop(proc)


def wait_rpc(url: str) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber",
                       "params": []}).encode()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"ganache at {url} did not start")


def rand_addr() -> str:
    return "0x" + secrets.token_hex(20)


async def prefill(node: Node, blocks: int, native: int, logs: int, watched: str) -> int:
    """Blocks of `native` value transfers plus one token call emitting `logs` Transfer logs;
    `watched` receives one of each per block. Returns the first filled block."""
    accounts = await contracts.accounts(node)
    token = await contracts.erc20_like(node, accounts[0])
    first = int(await node.rpc("eth_blockNumber"), 16) + 1
    await node.rpc("miner_stop")
    try:
        for b in range(blocks):
            sends = [contracts.pay(node, accounts[i % len(accounts)],
                                   watched if i == 0 else rand_addr(), 1 + i)
                     for i in range(native)]
            await asyncio.gather(*sends)
            moves = [(rand_addr(), rand_addr(), 1 + i) for i in range(logs - 1)]
            await token.emit(accounts[-1], [*moves, (rand_addr(), watched, 7)])
            await node.rpc("evm_mine")
            if b % 50 == 49:
                step(f"  {b + 1} blocks filled")
    finally:
        await node.rpc("miner_start")
    return first


async def watched_store(path: Path, chain: str, hit: str, count: int) -> SqliteStore:
    """A fresh store whose monitors of `chain` watch `count` addresses, `hit` among them."""
    store = SqliteStore(path)
    await store.open()
    addresses = [hit] + [rand_addr() for _ in range(count - 1)]
    for i in range(0, count, PER_MONITOR):
        chunk = frozenset(addresses[i:i + PER_MONITOR])
        await store.put_monitor(Monitor(f"mon_{i // PER_MONITOR}", chain, chunk, "ep_none"))
    return store


@dataclass(frozen=True)
class Run:
    addresses: int
    blocks: int
    wall: float
    cpu: float
    events: int
    index_build: float

    @property
    def rate(self) -> float:
        return self.blocks / self.wall

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu / self.blocks


async def follow_once(url: str, first: int, last: int, hit: str, addresses: int,
                      tmp: Path) -> Run:
    chain = "bench"
    store = await watched_store(tmp / f"f-{addresses}-{secrets.token_hex(4)}.sqlite3", chain,
                                hit, addresses)
    try:
        async with aiohttp.ClientSession() as session:
            follower = ChainFollower(chain, ChainFollowConfig(start_block=first),
                                     EthereumClient(session, url, 60.0), store,
                                     FollowerMetrics.create(CollectorRegistry()))
            started = time.perf_counter()
            index = await follower.index.current()  # built once, not per block
            build = time.perf_counter() - started
            assert index.addresses == addresses
            events = blocks = 0
            wall0, cpu0 = time.perf_counter(), time.process_time()
            while True:
                result = await follower.step()
                if result.error:
                    raise RuntimeError(result.error)
                events, blocks = events + result.events, blocks + result.processed
                if result.next_block is not None and result.next_block > last:
                    break
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    finally:
        await store.close()
    return Run(addresses, blocks, wall, cpu, events, build)


async def throughput(url: str, args: argparse.Namespace, tmp: Path) -> dict[int, list[Run]]:
    hit = rand_addr()
    async with aiohttp.ClientSession() as session:
        node = Node(url)
        node.session = session
        step(f"pre-filling {args.blocks} blocks: {args.native} native transfers and one call "
             f"with {args.logs} ERC-20 Transfer logs each")
        first = await prefill(node, args.blocks, args.native, args.logs, hit)
        last = int(await node.rpc("eth_blockNumber"), 16)  # miner_start may add an empty one
    runs: dict[int, list[Run]] = {n: [] for n in CASES}
    for r in range(args.runs):
        order = CASES[r % len(CASES):] + CASES[:r % len(CASES)]  # no case always first
        for n in order:
            run = await follow_once(url, first, last, hit, n, tmp)
            runs[n].append(run)
            step(f"  run {r + 1}: {n:>7,} addresses: {run.rate:8.1f} blocks/s, "
                 f"{run.cpu_ms:6.2f} ms CPU/block, {run.events} events")
    return runs


# --- latency: mined → accepted → delivered ------------------------------------------------


class TimedStore(SqliteStore):
    """Notes when each detected event's `advance` returned (= accepted, durably)."""

    accepted: dict[str, float]

    async def advance(self, name: str, state: Mapping[str, Any], events: Sequence[NewEvent],
                      matches: Sequence[MatchRecord], now: datetime, *,
                      holder: str | None = None) -> list[Stored]:
        ids = await super().advance(name, state, events, matches, now, holder=holder)
        at = time.perf_counter()
        for event in events:
            if event.type == DETECTED:
                self.accepted.setdefault(event.data["tx_hash"], at)
        return ids


@contextlib.asynccontextmanager
async def sink(arrived: dict[str, float]) -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        if body["type"] == DETECTED:
            arrived.setdefault(body["data"]["tx_hash"], time.perf_counter())
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class Latency:
    poll: float
    accepted: list[float]
    delivered: list[float]
    send: float  # median time eth_sendTransaction took (ganache mines inside it)


async def watch_head(url: str, seen: dict[int, float]) -> None:
    """When each block number first showed as the head (polled every 2 ms): the moment it
    was mined, as near as a client can tell."""
    payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.post(url, json=payload) as resp:
                head = int((await resp.json())["result"], 16)
            seen.setdefault(head, time.perf_counter())
            await asyncio.sleep(0.002)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency(url: str, poll: float, samples: int, tmp: Path) -> Latency:
    key = "bench-key"
    listen = f"127.0.0.1:{free_port()}"
    data_dir = tmp / f"svc-{poll}"
    data_dir.mkdir()
    store = TimedStore(data_dir / "service.sqlite3")
    store.accepted = {}
    svc = Service(ServiceSection(listen=listen, api_keys=(key,), allow_private_targets=True),
                  data_dir, store=store)
    arrived: dict[str, float] = {}
    mined: dict[str, float] = {}
    sends: list[float] = []
    await svc.start()
    await asyncio.to_thread(wait_http, f"http://{listen}/healthz")
    try:
        async with sink(arrived) as hook, aiohttp.ClientSession() as session:
            async with session.post(f"http://{listen}/v1/endpoints", json={"url": hook},
                                    headers={"Authorization": f"Bearer {key}"}) as resp:
                endpoint = await resp.json()
            watched = rand_addr()
            await store.put_monitor(Monitor("mon_latency", "bench", frozenset({watched}),
                                            endpoint["id"]))
            node = Node(url)
            node.session = session
            accounts = await contracts.accounts(node)
            assert svc.dispatcher is not None
            follower = ChainFollower("bench", ChainFollowConfig(poll_interval=poll), EthereumClient(
                session, url, 10.0), store, FollowerMetrics.create(CollectorRegistry()),
                wake=svc.dispatcher.wake)
            seen: dict[int, float] = {}
            tasks = [asyncio.create_task(follower.run()),
                     asyncio.create_task(watch_head(url, seen))]
            await asyncio.sleep(poll * 2)  # the first poll has started
            for i in range(samples):
                await asyncio.sleep(random.uniform(0, poll))  # any phase against the poll
                sent = time.perf_counter()
                tx = await contracts.pay(node, accounts[i % 3], watched, 1 + i)
                returned = time.perf_counter()  # instamine: mined before the hash returns
                block = int((await contracts.receipt(node, tx))["blockNumber"], 16)
                # ganache may show the block before it answers the sender: the earlier wins
                mined[tx] = min(returned, seen.get(block, returned))
                sends.append(returned - sent)
                async with asyncio.timeout(poll * 4 + 30):
                    while tx not in arrived:
                        await asyncio.sleep(0.002)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await svc.stop()
    return Latency(poll, [store.accepted[t] - at for t, at in mined.items()],
                   [arrived[t] - at for t, at in mined.items()], statistics.median(sends))


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        with ganache() as url:
            runs = await throughput(url, args, tmp)
        # a fresh node: on the pre-filled one ganache spends ~70 ms mining each transaction
        # and answers nothing meanwhile, which would be measured as our latency
        with ganache() as url:
            lat = []
            for poll in (float(p) for p in args.polls.split(",")):
                step(f"latency: {args.samples} transfers, poll interval {poll:g}s")
                lat.append(await latency(url, poll, args.samples, tmp))

    print()
    print(f"Follower throughput: {args.blocks} blocks of {args.native} native transfers + "
          f"{args.logs} ERC-20 logs (2 matching per block), median of {args.runs} runs")
    print(f"  {'watched addresses':>18} {'blocks/s':>10} {'transfers/s':>12} "
          f"{'CPU ms/block':>13} {'index build':>12} {'events':>7}")
    median: dict[int, float] = {}
    for n in CASES:
        rates = [r.rate for r in runs[n]]
        median[n] = statistics.median(rates)
        cpu = statistics.median(r.cpu_ms for r in runs[n])
        build = statistics.median(r.index_build for r in runs[n])
        print(f"  {n:>18,} {median[n]:>10.1f} {median[n] * (args.native + args.logs):>12,.0f} "
              f"{cpu:>13.2f} {build * 1000:>10.0f}ms {runs[n][0].events:>7}")
    for n in CASES[1:]:
        ratio = median[n] / median[CASES[0]]
        verdict = "met" if ratio >= GOAL else "NOT met"
        print(f"  ratio {n:,} / 1 addresses: {ratio:.2f}x"
              + (f"   goal >= {GOAL}x: {verdict}" if n == CASES[-1] else ""))
    print()
    print("Mined (the block first seen as head by a 2 ms poller, or eth_sendTransaction "
          "returned if sooner) → detected event accepted in the store / signed webhook at "
          "the sink")
    for result in lat:
        accepted, delivered = result.accepted, result.delivered
        print(f"  poll {result.poll:g}s: accepted median {ms(statistics.median(accepted))}, "
              f"p99 {ms(pct(accepted, 0.99))}; delivered median "
              f"{ms(statistics.median(delivered))}, p99 {ms(pct(delivered, 0.99))}  "
              f"({len(delivered)} samples; eth_sendTransaction took {ms(result.send).strip()})")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=200)
    parser.add_argument("--native", type=int, default=40)
    parser.add_argument("--logs", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--polls", default="0.1,2")
    parser.add_argument("--samples", type=int, default=60)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
