"""Every background task of the service runs under its supervisor (STYLE.md rule 11c): a failure
injected into each (a method it calls raises once) is logged at ERROR with its traceback and
the task's name, counted in `crypitor_task_crashes_total{task}` on the service's /metrics,
and the task runs again. A crashed dispatcher makes `/readyz` answer 503 until it restarted,
and events accepted meanwhile are delivered afterwards (issue 12, items 1 and 2)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from core import signing
from core.leases import Lease
from core.supervisor import Supervisor
from monitor.config import ChainFollowConfig, ServiceSection
from service.app import Service
from service.metrics import new_metrics
from tests.service.follow.sim import SimChain
from tests.support.chain_nodes import FakeNode
from tests.support.net import free_port
from tests.support.supervision import Gate, until
from tests.support.web import serve

pytestmark = pytest.mark.timeout(30)
KEY = "supervised-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def raise_once(original: Callable[..., Awaitable[Any]], exc: Exception,
               calls: list[int]) -> Callable[..., Awaitable[Any]]:
    """`original`, except that its first call raises `exc`; `calls` counts every call."""
    async def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise exc
        return await original(*args, **kwargs)
    return flaky


def crash_records(caplog: pytest.LogCaptureFixture, task: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info
            and f"task {task} crashed" in r.getMessage()]


def crashes(svc: Service, task: str) -> float:
    return svc.metrics.registry.get_sample_value(
        "crypitor_task_crashes_total", {"task": task}) or 0.0


@pytest.fixture
async def sink() -> AsyncIterator[tuple[str, list[bytes]]]:
    got: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        got.append(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    async with serve(app) as base:
        yield f"{base}/hook", got


async def test_a_crashed_dispatcher_is_logged_counted_not_ready_and_restarted(
        tmp_path: Path, sink: tuple[str, list[bytes]], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 1's symptom, generically: the claim raises OverflowError (as the pacing
    arithmetic did for a tiny rate_limit); nothing may stay silent or stop delivery."""
    url, got = sink
    listen = f"127.0.0.1:{free_port()}"
    metrics, gate = new_metrics(), Gate()
    svc = Service(ServiceSection(listen=listen, api_keys=(KEY,), allow_private_targets=True),
                  tmp_path, metrics=metrics,
                  supervisor=Supervisor(metrics.task_crashed, sleep=gate.sleep))
    claims: list[int] = []
    monkeypatch.setattr(svc.store, "claim", raise_once(
        svc.store.claim, OverflowError("date value out of range"), claims))
    base = f"http://{listen}"
    caplog.set_level(logging.ERROR)
    await svc.start()
    try:
        async with aiohttp.ClientSession() as http:
            await gate.next_wait()  # the dispatcher crashed and waits for its restart
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 503
                assert "dispatcher" in (await resp.json())["status"]
            [record] = crash_records(caplog, "dispatcher")
            assert record.exc_info is not None and record.exc_info[0] is OverflowError
            async with http.get(f"{base}/metrics") as resp:
                assert 'crypitor_task_crashes_total{task="dispatcher"} 1.0' in await resp.text()
            # accepted while the dispatcher is down ...
            async with http.post(f"{base}/v1/endpoints", json={"url": url},
                                 headers=AUTH) as resp:
                assert resp.status == 201
            async with http.post(f"{base}/v1/events", json={"type": "t", "data": {"n": 1}},
                                 headers=AUTH) as resp:
                assert resp.status == 202
            gate.open()
            await until(lambda: len(claims) >= 2)  # ... and delivered once it runs again
            await until(lambda: len(got) == 1)
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 200
    finally:
        await svc.stop()
    assert crashes(svc, "dispatcher") == 1.0


def _inject_stats(svc: Service, monkeypatch: pytest.MonkeyPatch, calls: list[int]) -> None:
    monkeypatch.setattr(svc.store, "stats",
                        raise_once(svc.store.stats, RuntimeError("stats bug"), calls))


def _inject_gained(_svc: Service, monkeypatch: pytest.MonkeyPatch, calls: list[int]) -> None:
    monkeypatch.setattr(Lease, "gained", raise_once(Lease.gained, RuntimeError("gained bug"),
                                                    calls))


def _inject_renew(_svc: Service, monkeypatch: pytest.MonkeyPatch, calls: list[int]) -> None:
    monkeypatch.setattr(Lease, "renew", raise_once(Lease.renew, RuntimeError("renew bug"),
                                                   calls))


@pytest.mark.parametrize(("task", "inject"), [
    ("queue-stats", _inject_stats),
    ("follower-eth", _inject_gained),
    ("lease-eth", _inject_renew),
])
async def test_each_other_service_task_is_logged_counted_and_restarted(
        task: str, inject: Callable[[Service, pytest.MonkeyPatch, list[int]], None],
        tmp_path: Path, fake_node: FakeNode, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    fake_node.answer("/", SimChain())
    chain = ChainFollowConfig(fake_node.url, confirmations=0, poll_interval=0.01,
                              start_block=0)
    listen = f"127.0.0.1:{free_port()}"
    metrics, gate = new_metrics(), Gate(held=False)
    svc = Service(ServiceSection(listen=listen, api_keys=(KEY,), chains={"eth": chain}),
                  tmp_path, metrics=metrics,
                  supervisor=Supervisor(metrics.task_crashed, sleep=gate.sleep))
    calls: list[int] = []
    inject(svc, monkeypatch, calls)
    caplog.set_level(logging.ERROR)
    await svc.start()
    try:
        await until(lambda: len(calls) >= 2)  # crashed once, then its work happened again
        async with aiohttp.ClientSession() as http, http.get(f"http://{listen}/readyz") as resp:
            assert resp.status == 200  # not an essential task
    finally:
        await svc.stop()
    assert crashes(svc, task) == 1.0
    assert len(crash_records(caplog, task)) == 1
    assert sum(crashes(svc, t) for t in ("dispatcher", "queue-stats", "follower-eth",
                                         "lease-eth")) == 1.0


async def test_a_delivery_attempt_that_fails_in_the_dispatcher_is_logged_and_counted(
        tmp_path: Path, sink: tuple[str, list[bytes]], caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug inside one attempt (here: signing raises once) does not end its lane silently:
    it is logged with its traceback, counted, and the lane goes on with the next claim."""
    url, got = sink
    listen = f"127.0.0.1:{free_port()}"
    svc = Service(ServiceSection(listen=listen, api_keys=(KEY,), allow_private_targets=True,
                                 max_in_flight_per_endpoint=1), tmp_path)
    calls: list[int] = []
    original = signing.Signer.signature

    def flaky(self: signing.Signer, *args: Any) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("signing bug")
        return original(self, *args)

    monkeypatch.setattr(signing.Signer, "signature", flaky)
    caplog.set_level(logging.ERROR)
    base = f"http://{listen}"
    await svc.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/v1/endpoints", json={"url": url},
                                 headers=AUTH) as resp:
                assert resp.status == 201
            for n in (1, 2):
                async with http.post(f"{base}/v1/events", json={"type": "t", "data": {"n": n}},
                                     headers=AUTH) as resp:
                    assert resp.status == 202
            await until(lambda: len(got) >= 1)
    finally:
        await svc.stop()
    [record] = [r for r in caplog.records if "failed in the dispatcher" in r.getMessage()]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    assert crashes(svc, "delivery-worker") == 1.0
