"""A real `crypitor service` on a Redis Sentinel group, under a steady event load, while its
primary is killed with -9: Sentinel promotes the replica, the service follows it, delivery
goes on, and every event that was answered 202 is delivered. Requests during the failover
may fail (503 or a cut connection); none that got a 202 is lost.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.support.redis_sentinel import SentinelGroup
from tests.support.service_proc import AUTH, ServiceProcess, Sink, wait_delivered

pytestmark = pytest.mark.timeout(120)


class Load:
    """Clients posting events without pause; they keep going through failures."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.acked: list[str] = []
        self.failed = 0
        self.stopped = False

    async def client(self, http: aiohttp.ClientSession, n: int) -> None:
        i = 0
        while not self.stopped:
            i += 1
            try:
                async with http.post(f"{self.base}/v1/events", headers=AUTH,
                                     json={"type": "t", "data": {"c": n, "i": i}}) as resp:
                    if resp.status == 202:
                        self.acked.append((await resp.json())["id"])
                        continue
                    assert resp.status == 503, await resp.text()  # never a 500
            except aiohttp.ClientError:
                pass
            self.failed += 1
            await asyncio.sleep(0.05)

    async def until(self, count: int) -> None:
        while len(self.acked) < count:
            await asyncio.sleep(0.05)


async def test_delivery_goes_on_across_a_failover_and_no_202_is_lost(
        tmp_path: Path, sink: Sink, sentinel_group: SentinelGroup) -> None:
    service = ServiceProcess(tmp_path, sentinel_group.url, 'request_timeout = "1s"\n')
    await service.start()
    load = Load(service.base)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{service.base}/v1/endpoints", headers=AUTH,
                                 json={"url": sink.url}) as resp:
                assert resp.status == 201
            clients = [asyncio.create_task(load.client(http, n)) for n in range(8)]
            try:
                async with asyncio.timeout(45):
                    await load.until(150)
                    before = len(load.acked)
                    sentinel_group.primary.stop(signal.SIGKILL)
                    promoted = {r.port for r in sentinel_group.replicas}
                    while sentinel_group.primary_port() not in promoted:
                        await asyncio.sleep(0.1)
                    # accepted on the promoted replica: the service follows the failover
                    await load.until(len(load.acked) + 150)
            finally:
                load.stopped = True
                await asyncio.gather(*clients)
        await wait_delivered(sink, load.acked, 30)
    finally:
        if service.proc is not None and service.proc.poll() is None:
            service.stop(signal.SIGTERM)
    assert before >= 150
    assert set(load.acked) <= set(sink.by_event)  # at least once: nothing answered 202 lost


async def test_an_event_no_replica_acknowledges_is_answered_503_not_202(
        tmp_path: Path, sink: Sink, sentinel_group: SentinelGroup) -> None:
    service = ServiceProcess(tmp_path, sentinel_group.url)
    await service.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{service.base}/v1/endpoints", headers=AUTH,
                                 json={"url": sink.url}) as resp:
                assert resp.status == 201
            for replica in sentinel_group.replicas:
                replica.stop(signal.SIGKILL)
            async with http.post(f"{service.base}/v1/events", headers=AUTH,
                                 json={"type": "t", "data": {}, "idempotency_key": "k1"}) as resp:
                assert resp.status == 503
                body = await resp.json()
        assert body == {"error": "no Redis replica acknowledged the write in time, so it is "
                                 "not acknowledged; retry with the same idempotency_key",
                        "field": None}
    finally:
        if service.proc is not None and service.proc.poll() is None:
            service.stop(signal.SIGTERM)
