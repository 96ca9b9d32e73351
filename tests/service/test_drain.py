"""SIGTERM drains a real `crypitor service`: `/readyz` answers 503 at once while `/v1` still
answers (with `Connection: close`), the listener closes after `shutdown_drain`, a delivery in
flight gets `shutdown_timeout` to finish, and the process exits 0. A second signal stops at
once, and the delivery it cut short is delivered once after a restart."""

from __future__ import annotations

import asyncio
import json
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.support.draining import until_not_ready, until_refused
from tests.support.service_proc import AUTH, ServiceProcess
from tests.support.web import serve


@dataclass
class GatedSink:
    """Holds every delivery until `gate` opens; counts those it answered to a service still
    waiting for the answer."""

    url: str = ""
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    received: Counter[str] = field(default_factory=Counter)
    answered: Counter[str] = field(default_factory=Counter)

    async def handle(self, request: web.Request) -> web.Response:
        event_id = json.loads(await request.read())["id"]
        self.received[event_id] += 1
        self.arrived.set()
        await self.gate.wait()
        if request.transport is not None and not request.transport.is_closing():
            self.answered[event_id] += 1  # not when the service gave up waiting
        return web.Response(status=200)


@pytest.fixture
async def gated_sink() -> AsyncIterator[GatedSink]:
    s = GatedSink()
    app = web.Application()
    app.router.add_post("/hook", s.handle)
    async with serve(app) as base:
        s.url = f"{base}/hook"
        yield s
        s.gate.set()


async def _event_in_flight(http: aiohttp.ClientSession, service: ServiceProcess,
                           sink: GatedSink) -> str:
    async with http.post(f"{service.base}/v1/endpoints", headers=AUTH,
                         json={"url": sink.url}) as resp:
        assert resp.status == 201
    async with http.post(f"{service.base}/v1/events", headers=AUTH,
                         json={"type": "t", "data": {}}) as resp:
        assert resp.status == 202
        event_id: str = (await resp.json())["id"]
    await sink.arrived.wait()
    return event_id


def _exit(service: ServiceProcess) -> tuple[int, str]:
    """The exit code and the log of a service that was signalled to stop."""
    assert service.proc is not None
    service.proc.wait(timeout=60)
    return service.proc.returncode, service.log.read_text(errors="replace")


@pytest.mark.timeout(60)
async def test_sigterm_drains_then_closes_then_lets_the_delivery_finish(
        tmp_path: Path, gated_sink: GatedSink) -> None:
    service = ServiceProcess(tmp_path, drain="2s", extra='shutdown_timeout = "60s"\n')
    await service.start()
    proc = service.proc
    assert proc is not None
    async with aiohttp.ClientSession() as http:
        event_id = await _event_in_flight(http, service, gated_sink)
        proc.send_signal(signal.SIGTERM)
        resp = await until_not_ready(http, service.base)
        assert resp.headers["Connection"] == "close"
        # still served during the drain, with Connection: close
        async with http.post(f"{service.base}/v1/events", headers=AUTH,
                             json={"type": "t", "data": {"late": True}}) as resp:
            assert resp.status == 202
            assert resp.headers["Connection"] == "close"
            late_id = (await resp.json())["id"]
        await until_refused(http, service.base)  # the drain is over: the listener closed
        assert proc.poll() is None  # ... while the delivery in flight may still finish
        gated_sink.gate.set()
        code, err = await asyncio.to_thread(_exit, service)
    assert code == 0, err
    assert "Traceback" not in err
    for phase in ("shutting down", "draining for 2s", "closing the listeners", "stopped"):
        assert phase in err, err
    assert gated_sink.answered[event_id] == 1
    await service.start()  # the late event is delivered; the finished one not again
    try:
        async with asyncio.timeout(30):
            while not gated_sink.answered[late_id]:
                await asyncio.sleep(0.05)
    finally:
        assert proc.poll() is not None
        await asyncio.to_thread(service.stop, signal.SIGTERM)
    assert gated_sink.received[event_id] == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT])
async def test_a_second_signal_stops_at_once_and_loses_nothing(
        tmp_path: Path, gated_sink: GatedSink, second: signal.Signals) -> None:
    # a drain and a timeout far beyond the test's own limit: only the second signal ends it
    service = ServiceProcess(tmp_path, drain="10m", extra='shutdown_timeout = "1h"\n')
    await service.start()
    proc = service.proc
    assert proc is not None
    async with aiohttp.ClientSession() as http:
        event_id = await _event_in_flight(http, service, gated_sink)
        proc.send_signal(signal.SIGTERM)
        await until_not_ready(http, service.base)
        proc.send_signal(second)
        code, err = await asyncio.to_thread(_exit, service)
    assert code == 0, err
    assert "Traceback" not in err
    assert "second stop signal: stopping at once" in err, err
    assert not gated_sink.answered  # cut short: it goes back to the queue ...
    gated_sink.gate.set()
    await service.start()
    try:  # ... and is delivered after the restart, once
        async with asyncio.timeout(30):
            while not gated_sink.answered[event_id]:
                await asyncio.sleep(0.05)
    finally:  # this one would drain for 10 minutes too: two signals
        assert service.proc is not None
        service.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(service.stop, signal.SIGINT)
    assert gated_sink.answered[event_id] == 1
    assert gated_sink.received[event_id] == 2  # the attempt cut short, then the delivery
