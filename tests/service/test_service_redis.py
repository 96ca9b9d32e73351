"""Two `crypitor service` processes on one real Redis share the deliveries, and when one is
killed with -9 the other takes over what it had claimed: every 202 still arrives."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from tests.support.redis_server import RedisServer
from tests.support.service_proc import AUTH, ServiceProcess, Sink, load, wait_delivered


def delivered_by(service: ServiceProcess) -> float:
    with urllib.request.urlopen(f"{service.base}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    line = next(x for x in text.splitlines()
                if x.startswith('crypitor_webhook_deliveries_total{outcome="success"}'))
    return float(line.rsplit(" ", 1)[1])


async def test_two_processes_share_the_queue_and_take_over_a_killed_one(
        tmp_path: Path, sink: Sink, redis_server: RedisServer) -> None:
    queue = redis_server.url.rsplit("/", 1)[0] + "/7"  # a database of its own
    # a short request timeout keeps the lease (and so the takeover) short
    extra = 'request_timeout = "1s"\n'
    first = ServiceProcess(tmp_path / "a", queue, extra)
    second = ServiceProcess(tmp_path / "b", queue, extra)
    await first.start()
    await second.start()
    try:
        async with aiohttp.ClientSession() as http, http.post(
                f"{first.base}/v1/endpoints", headers=AUTH, json={"url": sink.url}) as resp:
            assert resp.status == 201
        sink.delay = 0.02
        acked: list[str] = []
        await asyncio.gather(load(first.base, acked, 200, 20), load(second.base, acked, 400, 20))
        await wait_delivered(sink, acked, 60)
        shares = [delivered_by(first), delivered_by(second)]
        assert all(share > 0 for share in shares), shares  # both did part of the work

        # now a slow sink keeps deliveries leased by the first process when it dies
        sink.delay = 0.5
        more: list[str] = []
        await load(first.base, more, 100, 20)
        await asyncio.sleep(0.3)
        first.stop(signal.SIGKILL)
        await wait_delivered(sink, more, 90)  # the second reclaims after the lease
    finally:
        for service in (first, second):
            if service.proc is not None and service.proc.poll() is None:
                service.stop(signal.SIGTERM)
    assert set(more) <= set(sink.by_event)
    for event_id in acked + more:
        assert len(set(sink.by_event[event_id])) == 1  # one webhook-id per event


async def test_a_keyspace_of_an_unknown_format_stops_the_service_with_one_line(
        tmp_path: Path, redis_server: RedisServer) -> None:
    """A Redis a newer build wrote: `crypitor service` exits 1 naming it, no traceback."""
    queue = redis_server.url.rsplit("/", 1)[0] + "/9"  # its own database (7, 8: other tests)
    client = aioredis.Redis.from_url(queue, decode_responses=True)
    await client.set("crypitor:format", "999")
    try:
        service = ServiceProcess(tmp_path, queue)
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "monitor", "service", "-c",
                             str(service.config)], capture_output=True, text=True, timeout=60)
        assert await client.keys("*") == ["crypitor:format"]  # nothing else written
    finally:
        await client.delete("crypitor:format")
        await client.aclose()
    assert proc.returncode == 1, proc.stderr
    assert ("cannot start the webhook service: redis store: the keyspace crypitor:format has"
            " format version 999; this build knows versions 1") in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
