"""Every background task of `crypitor run` runs under the monitor's supervisor (STYLE.md rule
11c): a failure injected into each (a method it calls raises once) is logged at ERROR with its
traceback and the task's name, counted in `crypitor_task_crashes_total{task}` on the monitor's
/metrics, and the task's work happens again. The alert flush loop is essential: the monitor's
`/readyz` answers 503 while it waits for its restart, 200 once probing runs."""

from __future__ import annotations

import inspect
import logging
import tomllib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

import dashboards.pusher
import monitor.alerting_setup
import monitor.app
from alerts.alerting import Alerting
from alerts.telegram import TelegramSender
from core.supervisor import Supervisor
from dashboards.build import all_dashboards
from dashboards.pusher import GrafanaPusher
from monitor.app import Runtime
from monitor.config import Config, parse
from monitor.exporters import GcpExporter
from monitor.runtime import TargetState, UptimeHistory
from tests.monitor.gcp_helpers import StepClock, probe_registry, settings
from tests.support.fake_gcp import FakeGcp
from tests.support.fake_grafana import FakeGrafana
from tests.support.fake_telegram import FakeTelegram
from tests.support.net import free_port
from tests.support.supervision import Gate, until
from tests.support.web import serve

pytestmark = pytest.mark.timeout(60)
CHAT = "-1001234567890"


@pytest.fixture
async def site() -> AsyncIterator[str]:
    async def ok(_r: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    async with serve(app) as base:
        yield f"{base}/"


def config(tmp_path: Path, site: str, fake: FakeTelegram) -> Config:
    text = f"""
[monitor]
listen = "127.0.0.1:{free_port()}"
data_dir = "{tmp_path / 'data'}"
[service]
enabled = true
listen = "127.0.0.1:{free_port()}"
[[targets]]
name = "site"
type = "http"
url = "{site}"
interval = "200ms"
timeout = "150ms"
[alerts]
[[alerts.receivers]]
name = "oncall"
bot_token = "env:TEST_BOT_TOKEN"
chat_id = "{CHAT}"
api_url = "{fake.url}"
command_chat_ids = ["{CHAT}"]
"""
    return parse(tomllib.loads(text), tmp_path / "config.toml")


def raise_once(cls: object, method: str, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Makes the first call of `cls.method` raise; the list counts every call."""
    original: Callable[..., Any] = getattr(cls, method)
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(f"injected into {method}")
        return original(*args, **kwargs)

    async def flaky_async(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError(f"injected into {method}")
        return await original(*args, **kwargs)

    monkeypatch.setattr(cls, method, flaky_async if inspect.iscoroutinefunction(original)
                        else flaky)
    return calls


def _history(mp: pytest.MonkeyPatch) -> list[int]:
    mp.setattr(monitor.app, "FLUSH_EVERY", 0.01)
    return raise_once(UptimeHistory, "flush", mp)


def _watch(mp: pytest.MonkeyPatch) -> list[int]:
    mp.setattr(monitor.alerting_setup, "SERVICE_EVERY", 0.01)
    return raise_once(CollectorRegistry, "get_sample_value", mp)


INJECTIONS: dict[str, Callable[[pytest.MonkeyPatch], list[int]]] = {
    "alert-flush": lambda mp: raise_once(Alerting, "flush", mp),
    "alert-send-oncall": lambda mp: raise_once(Alerting, "send_next", mp),
    "telegram-bot-oncall": lambda mp: raise_once(TelegramSender, "updates", mp),
    "history-flush": _history,
    "service-watch": _watch,
}


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()


@pytest.mark.parametrize("task", sorted(INJECTIONS))
async def test_each_monitor_task_is_logged_counted_and_restarted(
        task: str, tmp_path: Path, site: str, fake_telegram: FakeTelegram,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = INJECTIONS[task](monkeypatch)
    gate = Gate()

    def supervisor(on_crash: Callable[[str], None]) -> Supervisor:
        return Supervisor(on_crash, sleep=gate.sleep)

    caplog.set_level(logging.ERROR)
    runtime = Runtime(config(tmp_path, site, fake_telegram),
                      {"TEST_BOT_TOKEN": fake_telegram.token}, supervisor=supervisor)
    base = f"http://{runtime.config.monitor.listen}"
    await runtime.start()
    try:
        await gate.next_wait()  # it crashed and waits for its restart
        status, body = await get(f"{base}/readyz")
        if task == "alert-flush":  # essential
            assert status == 503 and task in body
        else:
            assert status == 200
        status, body = await get(f"{base}/metrics")
        assert f'crypitor_task_crashes_total{{task="{task}"}} 1.0' in body
        [record] = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info
                    and f"task {task} crashed" in r.getMessage()]
        assert record.exc_info is not None and record.exc_info[0] is RuntimeError
        gate.open()
        await until(lambda: len(calls) >= 2)  # restarted: its work happens again
        await until(lambda: runtime.not_ready() is None)
        status, _ = await get(f"{base}/readyz")
        assert status == 200
    finally:
        await runtime.stop()
    assert gate.delays == [1.0]  # that one crash, nothing else


async def test_readyz_answers_503_before_probing_and_while_stopping(
        tmp_path: Path, site: str, fake_telegram: FakeTelegram) -> None:
    runtime = Runtime(config(tmp_path, site, fake_telegram),
                      {"TEST_BOT_TOKEN": fake_telegram.token})
    assert runtime.not_ready() is not None
    await runtime.start()
    stopped = False
    try:
        status, body = await get(f"http://{runtime.config.monitor.listen}/readyz")
        assert status == 200 and '"ready"' in body
        await runtime.stop()
        stopped = True
        assert runtime.not_ready() is not None
    finally:
        if not stopped:
            await runtime.stop()


# ---- the exports: Google Cloud Monitoring and the Grafana push ------------------------------

@pytest.mark.parametrize("method", ["tick", "export_once"])
async def test_a_crashed_gcp_export_is_logged_counted_and_restarted(
        method: str, fake_gcp: FakeGcp, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The ticker itself, or one export cycle (its own task, whose crash the next tick
    raises in the ticker): either way the export goes on."""
    clock = StepClock()

    def moving() -> datetime:  # each cycle a minute later, so the spacing rule holds
        return clock.advance()

    crashes: list[str] = []
    calls = raise_once(GcpExporter, method, monkeypatch)
    caplog.set_level(logging.ERROR)
    exporter = GcpExporter(settings(fake_gcp), probe_registry(), node_id="n", now=moving,
                           spawn=Supervisor(crashes.append, sleep=Gate(held=False).sleep)
                           .supervise)
    exporter.interval = 0.05  # only here: to see the ticker fire a few times
    await exporter.start()
    try:
        await until(lambda: crashes == ["gcp-export"] and len(fake_gcp.requests) >= 1)
        assert len(calls) >= 2
    finally:
        await exporter.stop()
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info
                and "task gcp-export crashed" in r.getMessage()]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


async def test_a_crashed_grafana_push_is_logged_counted_and_pushed_again(
        fake_grafana: FakeGrafana, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = raise_once(dashboards.pusher, "push", monkeypatch)
    crashes: list[str] = []
    caplog.set_level(logging.ERROR)
    pusher = GrafanaPusher(fake_grafana.url, fake_grafana.token, "Crypitor",
                           "http://127.0.0.1:9090", all_dashboards("http://127.0.0.1:9090"),
                           spawn=Supervisor(crashes.append,
                                            sleep=Gate(held=False).sleep).supervise)
    pusher.start()
    try:
        report = await pusher.wait()
    finally:
        await pusher.stop()
    assert report is not None and report.created and len(calls) == 2
    assert crashes == ["grafana-push"]
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info
                and "task grafana-push crashed" in r.getMessage()]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


async def test_a_failing_result_handler_is_logged_counted_and_probing_goes_on(
        tmp_path: Path, site: str, fake_telegram: FakeTelegram,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler's runs are APScheduler jobs: a result handler that raises is counted
    under task="scheduler", and the target's next results are recorded."""
    calls = raise_once(TargetState, "record", monkeypatch)
    caplog.set_level(logging.ERROR)
    runtime = Runtime(config(tmp_path, site, fake_telegram),
                      {"TEST_BOT_TOKEN": fake_telegram.token})
    await runtime.start()
    try:
        await until(lambda: len(calls) >= 2 and runtime.states[0].last is not None)
        _, body = await get(f"http://{runtime.config.monitor.listen}/metrics")
    finally:
        await runtime.stop()
    assert 'crypitor_task_crashes_total{task="scheduler"} 1.0' in body
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info
                and "handling the result of target site failed" in r.getMessage()]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
