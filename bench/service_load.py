"""Request bodies and the two loads the bench process drives itself: a counted pre-load of
events in batches, and a paced stream of single events at a steady rate."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from bench.service_procs import AUTH
from bench.webhook_peers import EVENT

BATCH = 1000


def event_body() -> bytes:
    return json.dumps(EVENT, separators=(",", ":")).encode()


def batch_body(size: int = BATCH) -> bytes:
    return json.dumps([EVENT] * size, separators=(",", ":")).encode()


def typed_batches(total: int, types: int) -> list[bytes]:
    """`total` events in batches of BATCH, event n of type `bench.<n % types>`: with one
    endpoint per type, every endpoint gets total/types of them, spread over the batches."""
    return [json.dumps([{"type": f"bench.{n % types}", "data": EVENT["data"]}
                        for n in range(start, min(total, start + BATCH))],
                       separators=(",", ":")).encode()
            for start in range(0, total, BATCH)]


async def _load_timed(port: int, bodies: list[bytes], concurrency: int,
                      seconds: float) -> tuple[int, float]:
    """POST `bodies` as batches; returns (events accepted, monotonic time the first batch
    was accepted)."""
    queue = list(reversed(bodies))
    accepted, first = 0, 0.0
    deadline = time.monotonic() + seconds
    url = f"http://127.0.0.1:{port}/v1/events/batch"
    async with aiohttp.ClientSession(headers=AUTH,
                                     timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def worker() -> None:
            nonlocal accepted, first
            while queue and time.monotonic() < deadline:
                body = queue.pop()
                async with http.post(url, data=body) as resp:
                    answer = await resp.json()
                    if resp.status != 202:
                        raise RuntimeError(f"batch answered {resp.status}: {answer}")
                first = first or time.monotonic()
                accepted += len(answer["ids"]) if isinstance(answer, dict) else BATCH

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return accepted, first


def load_timed(port: int, bodies: list[bytes], concurrency: int = 4,
               seconds: float = 120.0) -> tuple[int, float]:
    """`_load_timed`, blocking."""
    return asyncio.run(_load_timed(port, bodies, concurrency, seconds))


async def _load(ports: list[int], total: int, concurrency: int,
                seconds: float) -> tuple[int, float]:
    body = batch_body()
    batches = total // BATCH
    taken = accepted = 0
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(headers=AUTH, timeout=timeout) as http:

        async def worker(port: int) -> None:
            nonlocal taken, accepted
            url = f"http://127.0.0.1:{port}/v1/events/batch"
            while taken < batches and time.monotonic() < deadline:
                taken += 1
                async with http.post(url, data=body) as resp:
                    await resp.read()
                    if resp.status != 202:
                        raise RuntimeError(f"batch answered {resp.status}: "
                                           f"{(await resp.text())[:300]}")
                accepted += BATCH

        t0 = time.monotonic()
        # workers spread over the processes, so each one ingests its share
        await asyncio.gather(*(worker(ports[i % len(ports)]) for i in range(concurrency)))
        return accepted, time.monotonic() - t0


def load(ports: list[int], total: int, concurrency: int = 4,
         seconds: float = 60.0) -> tuple[int, float]:
    """POST `total` events (batches of 1000, `concurrency` at a time, spread over `ports`);
    returns (events accepted, seconds taken). Stops early after `seconds`."""
    return asyncio.run(_load(ports, total, concurrency, seconds))


async def _paced(port: int, rate: float, seconds: float) -> tuple[int, int]:
    body = event_body()
    url = f"http://127.0.0.1:{port}/v1/events"
    ok = failed = 0
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(headers=AUTH, timeout=timeout) as http:

        async def one() -> None:
            nonlocal ok, failed
            try:
                async with http.post(url, data=body) as resp:
                    await resp.read()
                    ok += resp.status == 202
                    failed += resp.status != 202
            except (aiohttp.ClientError, TimeoutError):
                failed += 1

        tasks: list[asyncio.Task[None]] = []
        t0 = time.monotonic()
        for i in range(int(rate * seconds)):  # open loop: a slow answer delays no other send
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return ok, failed


def paced(port: int, rate: float, seconds: float) -> tuple[int, int]:
    """Single events at `rate` per second for `seconds`; returns (accepted, failed)."""
    return asyncio.run(_paced(port, rate, seconds))
