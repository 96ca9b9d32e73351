"""No loss across `kill -9` and SIGTERM: a real `crypitor service` process under load is
killed mid-stream, restarted on the same data, and every event that got a 202 must reach
the sink at least once, always under the same webhook-id. Duplicates are counted."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.support.service_proc import AUTH, ServiceProcess, Sink, load, wait_delivered


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_nothing_acknowledged_is_lost(tmp_path: Path, sink: Sink,
                                            sig: signal.Signals) -> None:
    sink.delay = 0.05
    service = ServiceProcess(tmp_path)
    await service.start()
    async with aiohttp.ClientSession() as http, http.post(
            f"{service.base}/v1/endpoints", headers=AUTH, json={"url": sink.url}) as resp:
        assert resp.status == 201
    acked: list[str] = []
    loader = asyncio.create_task(load(service.base, acked, stop_after=10_000, limit=20))
    async with asyncio.timeout(30):
        while len(acked) < 300:  # mid-stream: clients still posting, deliveries in flight
            await asyncio.sleep(0.01)
    code, err = await asyncio.to_thread(service.stop, sig)
    await loader
    assert code == (-9 if sig is signal.SIGKILL else 0), err
    assert "Traceback" not in err
    delivered_before = len(sink.by_event)
    await service.start()  # same data_dir: the queue and leases come back
    try:
        await wait_delivered(sink, acked, 60)
    finally:
        service.stop(signal.SIGTERM)
    assert set(acked) <= set(sink.by_event)  # at least once, every acknowledged event
    for event_id in acked:
        assert len(set(sink.by_event[event_id])) == 1  # one webhook-id across copies
    duplicates = sum(len(v) - 1 for v in sink.by_event.values())
    print(f"\n{sig.name}: {len(acked)} acknowledged, {delivered_before} delivered before the "
          f"stop, {duplicates} duplicate deliveries after restart")
    if sig is signal.SIGTERM:  # a graceful stop returns in-flight work instead of redoing it
        assert duplicates == 0
