"""Alerting end to end: a real local target goes down and comes back, `crypitor run`'s
monitor (in process) evaluates, routes and sends through the fake Telegram Bot API."""

from __future__ import annotations

import asyncio
import logging
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from core.signing import new_secret
from monitor.app import Runtime
from monitor.config import Config, parse
from tests.support.alert_sink import AlertSink
from tests.support.fake_telegram import FakeTelegram
from tests.support.net import free_port
from tests.support.web import serve

pytestmark = pytest.mark.timeout(90)
CHAT = "-1001234567890"
OTHER_CHAT = "-1009999"
KEY = "test-monitor-key"


@dataclass
class Site:
    url: str = ""
    status: int = 200
    script: list[int] = field(default_factory=list)  # answers for the next probes, in order


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    s = Site()

    async def handle(_r: web.Request) -> web.Response:
        status = s.script.pop(0) if s.script else s.status
        return web.Response(status=status, text="ok" if status == 200 else "broken")

    app = web.Application()
    app.router.add_get("/{path:.*}", handle)  # any path: a node's URL may carry its key
    async with serve(app) as base:
        s.url = f"{base}/"
        yield s


def config(tmp_path: Path, site: Site, fake: FakeTelegram, extra: str = "") -> Config:
    text = f"""
[monitor]
listen = "127.0.0.1:{free_port()}"
data_dir = "{tmp_path / 'data'}"
api_keys = ["{KEY}"]
[service]
enabled = false
[[targets]]
name = "eth-main"
type = "http"
url = "{site.url}"
interval = "200ms"
timeout = "150ms"
labels = {{ team = "<b>chain</b> & co" }}
[alerts]
[[alerts.receivers]]
name = "oncall"
bot_token = "env:TEST_BOT_TOKEN"
chat_id = "{CHAT}"
api_url = "{fake.url}"
command_chat_ids = ["{CHAT}"]
[alerts.route]
receiver = "oncall"
group_wait = "0s"
group_interval = "1s"
{extra}
"""
    return parse(tomllib.loads(text), tmp_path / "config.toml")


Started = Callable[..., Any]


@pytest.fixture
async def monitor(tmp_path: Path, site: Site,
                  fake_telegram: FakeTelegram) -> AsyncIterator[Started]:
    running: list[Runtime] = []

    async def start(extra: str = "") -> Runtime:
        m = Runtime(config(tmp_path, site, fake_telegram, extra),
                    {"TEST_BOT_TOKEN": fake_telegram.token})
        await m.start()
        running.append(m)
        return m

    yield start
    for m in running:
        await m.stop()


async def until(check: Callable[[], bool], seconds: float = 20.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():
            await asyncio.sleep(0.05)


def texts(fake: FakeTelegram) -> list[str]:
    return [s.text for s in fake.sent if s.chat_id == CHAT]


async def api(m: Runtime, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    base = f"http://{m.config.monitor.listen}"
    async with aiohttp.ClientSession() as http, http.request(
            method, base + path, json=body,
            headers={"Authorization": f"Bearer {KEY}"}) as resp:
        return resp.status, await resp.json()


async def test_down_fires_once_and_recovery_resolves_once(
        monitor: Started, site: Site, fake_telegram: FakeTelegram,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    m = await monitor()
    await asyncio.sleep(0.6)
    assert texts(fake_telegram) == []
    site.status = 500
    await until(lambda: len(texts(fake_telegram)) == 1)
    firing = fake_telegram.sent[0]
    assert "FIRING" in firing.text and "TargetDown" in firing.text
    assert "eth-main: HTTP 500, expected 2xx" in firing.text
    assert f"🔗 {site.url}" in firing.text  # the target's URL, as it may be shown
    assert firing.parse_mode == "HTML" and firing.reply_markup is not None
    await asyncio.sleep(1.5)  # still down: no storm
    assert len(texts(fake_telegram)) == 1
    _, alerts = await api(m, "GET", "/api/v1/alerts")
    assert [(a["alertname"], a["target"], a["state"]) for a in alerts] == [
        ("TargetDown", "eth-main", "firing")]
    site.status = 200
    await until(lambda: len(texts(fake_telegram)) == 2)
    assert "RESOLVED" in texts(fake_telegram)[1]
    await asyncio.sleep(1.5)
    assert len(texts(fake_telegram)) == 2
    _, history = await api(m, "GET", "/api/v1/notifications")
    assert [(h["kind"], h["status"]) for h in history] == [("resolved", "sent"),
                                                          ("firing", "sent")]
    assert "TargetDown FIRING" in caplog.text
    assert fake_telegram.token not in caplog.text
    assert fake_telegram.token.split(":")[1] not in caplog.text


async def test_a_flapping_target_makes_no_storm(
        monitor: Started, site: Site, fake_telegram: FakeTelegram) -> None:
    m = await monitor()
    # probe by probe (not by the clock, which a loaded machine stretches): down long enough
    # to fire, then up for one probe only, five times over
    site.script = [500, 500, 500, 200] * 5
    await until(lambda: not site.script)
    await until(lambda: any("RESOLVED" in t for t in texts(fake_telegram)))
    await asyncio.sleep(1.2)
    assert ["FIRING" in t for t in texts(fake_telegram)] == [True, False]
    async with aiohttp.ClientSession() as http, http.get(
            f"http://{m.config.monitor.listen}/metrics") as resp:
        metrics = await resp.text()
    assert 'crypitor_notifications_total{outcome="sent",receiver="oncall"} 2.0' in metrics
    assert 'crypitor_alerts_firing{alertname="TargetDown",severity="critical"} 0.0' in metrics


async def test_a_restart_while_firing_neither_forgets_nor_repeats(
        monitor: Started, site: Site, fake_telegram: FakeTelegram) -> None:
    first = await monitor()
    site.status = 500
    await until(lambda: len(texts(fake_telegram)) == 1)
    await first.stop()
    second = await monitor()
    await asyncio.sleep(2.0)
    assert len(texts(fake_telegram)) == 1  # firing remembered, not sent again
    _, alerts = await api(second, "GET", "/api/v1/alerts")
    assert [a["state"] for a in alerts] == ["firing"]
    site.status = 200
    await until(lambda: len(texts(fake_telegram)) == 2)
    assert "RESOLVED" in texts(fake_telegram)[1]


async def test_a_stop_while_telegram_answers_lets_the_send_finish_and_repeats_nothing(
        monitor: Started, site: Site, fake_telegram: FakeTelegram) -> None:
    """Telegram has taken the message but not answered yet when the monitor is stopped:
    the stop waits for the answer and marks it sent, so the restart sends nothing again."""
    fake_telegram.answer_delay = 1.5
    first = await monitor()
    site.status = 500
    await until(lambda: len(texts(fake_telegram)) == 1)  # taken; the answer is on its way
    await first.stop()
    fake_telegram.answer_delay = 0.0
    second = await monitor()
    await asyncio.sleep(2.0)
    assert len(texts(fake_telegram)) == 1
    _, history = await api(second, "GET", "/api/v1/notifications")
    assert [h["status"] for h in history] == ["sent"]


async def test_telegram_failures_delay_but_lose_and_repeat_nothing(
        monitor: Started, site: Site, fake_telegram: FakeTelegram) -> None:
    fake_telegram.fail("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    fake_telegram.fail("sendMessage", 500, "Internal Server Error")
    fake_telegram.fail("sendMessage", 502, "Bad Gateway")
    m = await monitor()
    site.status = 500
    await until(lambda: len(texts(fake_telegram)) == 1, 30)
    _, history = await api(m, "GET", "/api/v1/notifications")
    assert len(history) == 1 and history[0]["status"] == "sent"
    assert history[0]["attempts"] == 4
    await asyncio.sleep(1.0)
    assert len(texts(fake_telegram)) == 1


async def test_an_outbox_of_unsent_messages_survives_a_restart(
        monitor: Started, site: Site, fake_telegram: FakeTelegram) -> None:
    fake_telegram.fail("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
    first = await monitor()
    site.status = 500

    async def attempts() -> list[tuple[str, int]]:
        _, history = await api(first, "GET", "/api/v1/notifications")
        return [(h["status"], h["attempts"]) for h in history]

    async with asyncio.timeout(20):
        while await attempts() != [("pending", 1)]:
            await asyncio.sleep(0.05)
    await first.stop()  # the message is written, Telegram has not taken it yet
    assert texts(fake_telegram) == []
    await monitor()
    await until(lambda: len(texts(fake_telegram)) == 1)
    await asyncio.sleep(1.0)
    assert len(texts(fake_telegram)) == 1


async def test_a_silence_mutes_then_the_alert_is_sent_when_it_ends(
        monitor: Started, site: Site, fake_telegram: FakeTelegram) -> None:
    m = await monitor()
    status, silence = await api(m, "POST", "/api/v1/silences",
                                {"matchers": {"target": "eth-main"}, "duration": "2s",
                                 "comment": "node upgrade"})
    assert status == 201 and silence["active"]
    site.status = 500
    await asyncio.sleep(1.2)
    assert texts(fake_telegram) == []
    _, alerts = await api(m, "GET", "/api/v1/alerts")
    assert alerts[0]["muted"] == f"silenced by {silence['id']}"
    await until(lambda: len(texts(fake_telegram)) == 1)
    assert "FIRING" in texts(fake_telegram)[0]


async def test_a_maintenance_window_mutes_then_the_alert_is_sent(
        monitor: Started, site: Site, fake_telegram: FakeTelegram) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    windows = f"""
[[alerts.maintenance]]
name = "node-upgrade"
match = {{ type = "http" }}
start = "{start.isoformat()}"
duration = "4s"
"""
    m = await monitor(windows)
    site.status = 500
    await asyncio.sleep(1.5)
    _, alerts = await api(m, "GET", "/api/v1/alerts")
    assert alerts and alerts[0]["muted"] == "maintenance node-upgrade"
    assert texts(fake_telegram) == []
    await until(lambda: len(texts(fake_telegram)) == 1)  # the window closed, still down
    assert datetime.now(UTC) >= start + timedelta(seconds=4)
    assert "FIRING" in texts(fake_telegram)[0]


async def test_mutating_alert_endpoints_need_the_key(monitor: Started) -> None:
    m = await monitor()
    base = f"http://{m.config.monitor.listen}"
    async with aiohttp.ClientSession() as http:
        for method, path in (("POST", "/api/v1/silences"), ("DELETE", "/api/v1/silences/x"),
                             ("POST", "/api/v1/alertmanager")):
            async with http.request(method, base + path, json={}) as resp:
                assert resp.status == 401, (method, path)
                assert (await resp.json())["field"] == "Authorization"
    status, err = await api(m, "POST", "/api/v1/silences", {"matchers": {}})
    assert (status, err["field"]) == (422, "matchers")
    status, err = await api(m, "DELETE", "/api/v1/silences/nope")
    assert (status, err["field"]) == (404, "id")


async def test_bot_commands_obey_only_allowed_chats(
        monitor: Started, site: Site, fake_telegram: FakeTelegram) -> None:
    m = await monitor()
    site.status = 500
    await until(lambda: len(texts(fake_telegram)) == 1)
    fake_telegram.add_command(OTHER_CHAT, "/status", user_id=7, username="mallory")
    fake_telegram.add_command(CHAT, "/status", user_id=42, username="alice")
    await until(lambda: len(texts(fake_telegram)) == 2)
    status = texts(fake_telegram)[1]
    assert "1 of 1 targets down" in status and "eth-main" in status
    assert not [s for s in fake_telegram.sent if s.chat_id == OTHER_CHAT]

    fake_telegram.add_command(CHAT, "/silence eth-main 1h planned work", user_id=42,
                              username="alice")
    await until(lambda: len(texts(fake_telegram)) == 3)
    assert "Silenced target=eth-main" in texts(fake_telegram)[2]
    _, silences = await api(m, "GET", "/api/v1/silences")
    assert [(s["matchers"], s["created_by"]) for s in silences] == [
        ({"target": "eth-main"}, "@alice")]
    fake_telegram.add_command(CHAT, "/unsilence eth-main", user_id=42, username="alice")
    await until(lambda: len(texts(fake_telegram)) == 4)
    assert "Ended 1 silence" in texts(fake_telegram)[3]

    firing = fake_telegram.sent[0]
    fake_telegram.add_callback(firing, f"ack:{_fingerprint(firing.reply_markup)}")
    await until(lambda: bool(fake_telegram.answered) and bool(fake_telegram.edits))
    assert "Acknowledged by @" in str(fake_telegram.edits[-1]["text"])


async def test_alertmanager_payloads_reach_telegram(
        monitor: Started, fake_telegram: FakeTelegram) -> None:
    m = await monitor()
    payload: dict[str, Any] = {"version": "4", "status": "firing", "receiver": "crypitor",
                               "alerts": [
        {"status": "firing", "labels": {"alertname": "DiskFull", "instance": "db-1",
                                        "severity": "critical"},
         "annotations": {"summary": "disk <95%> full"},
         "startsAt": "2026-11-26T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}]}
    status, body = await api(m, "POST", "/api/v1/alertmanager", payload)
    assert (status, body) == (200, {"received": 1})
    await until(lambda: len(texts(fake_telegram)) == 1)
    assert "DiskFull" in texts(fake_telegram)[0]
    assert "disk &lt;95%&gt; full" in texts(fake_telegram)[0]
    payload["alerts"][0]["status"] = "resolved"
    await api(m, "POST", "/api/v1/alertmanager", payload)
    await until(lambda: len(texts(fake_telegram)) == 2)
    assert "RESOLVED" in texts(fake_telegram)[1]
    status, err = await api(m, "POST", "/api/v1/alertmanager", {"version": "3", "alerts": []})
    assert (status, err["field"]) == (422, "version")


def _fingerprint(markup: Any) -> str:
    return str(markup["inline_keyboard"][0][0]["callback_data"]).split(":", 1)[1]


async def test_a_webhook_receiver_hears_too_with_continue_and_no_credential_is_shown(
        tmp_path: Path, site: Site, fake_telegram: FakeTelegram, alert_sink: AlertSink,
        caplog: pytest.LogCaptureFixture) -> None:
    """The route sends TargetDown to the webhook and, with continue, on to Telegram too: the
    webhook gets Alertmanager's JSON, signed; Telegram's message shows the target's URL
    without its user, password, query or the API key in its path (as Infura's /v3/<key>);
    the RESOLVED replies to the FIRING."""
    caplog.set_level(logging.DEBUG)
    secret = new_secret()
    extra = f"""
[[alerts.route.routes]]
match = {{ alertname = "TargetDown" }}
receiver = "pager"
continue = true
[[alerts.route.routes]]
match = {{ alertname = "TargetDown" }}
receiver = "oncall"
[[alerts.receivers]]
name = "pager"
type = "webhook"
url = "{alert_sink.url}/hook?token=Zq81xv"
secret = "env:HOOK_SECRET"
"""
    cfg = config(tmp_path, site, fake_telegram, extra)
    port = site.url.rsplit(":", 1)[1].strip("/")
    path_key = "9aa3d95b3bc440fa88ea12eaa4456161"
    # (userinfo: refused by the probe)
    secret_url = f"http://127.0.0.1:{port}/v3/{path_key}?apikey=k3y"
    shown = f"http://127.0.0.1:{port}/v3/…"
    cfg = replace(cfg, targets=(replace(cfg.targets[0], url=secret_url),))
    m = Runtime(cfg, {"TEST_BOT_TOKEN": fake_telegram.token, "HOOK_SECRET": secret})
    await m.start()
    try:
        site.status = 500
        await until(lambda: len(texts(fake_telegram)) == 1 and len(alert_sink.posted) == 1)
        _, listed = await api(m, "GET", "/api/v1/targets")
        site.status = 200
        await until(lambda: len(texts(fake_telegram)) == 2 and len(alert_sink.posted) == 2)
    finally:
        await m.stop()
    firing, resolved = (s for s in fake_telegram.sent if s.chat_id == CHAT)
    assert f"🔗 {shown}\n" in firing.text
    assert [t["url"] for t in listed] == [shown]
    for text in (firing.text, resolved.text, caplog.text, str(listed),
                 *(p.body.decode() for p in alert_sink.posted)):
        assert "k3y" not in text and path_key not in text
    assert resolved.reply_to == firing.message_id
    hooks = [Webhook(secret).verify(p.body, p.headers) for p in alert_sink.posted]
    assert [(h["version"], h["status"], h["receiver"]) for h in hooks] == [
        ("4", "firing", "pager"), ("4", "resolved", "pager")]
    alert = hooks[0]["alerts"][0]
    assert alert["labels"]["alertname"] == "TargetDown" and alert["labels"]["target"] == "eth-main"
    assert alert["annotations"]["target_url"] == shown
    assert hooks[1]["alerts"][0]["fingerprint"] == alert["fingerprint"]
    assert "Zq81xv" not in caplog.text and secret[6:] not in caplog.text
