"""The webhook receiver: Alertmanager's webhook JSON (version 4) for every group notification,
signed with Standard Webhooks when a secret is set (verified by the `standardwebhooks`
library), sent to a real local HTTP sink through the outbox and alerting's sender loop:
429 and 5xx retried with the same webhook-id, other 4xx failed, the secret and the URL's
token in no log line or error.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from standardwebhooks.webhooks import Webhook

from alerts import NotifyError
from alerts.alerting import Alerting
from alerts.evaluate import Evaluator
from alerts.model import Alert, Notification
from alerts.routing import Router
from alerts.store import AlertStore, Outgoing, Queued
from alerts.webhook_receiver import ZERO_TIME, WebhookReceiver, payload, retry_after
from core.signing import new_secret
from monitor.alerting_setup import MonitorAlerting
from monitor.config import RouteConfig, SecretError
from monitor.config.alertconfig import AlertsSection
from monitor.config.decode import Decoder
from tests.support.alert_sink import AlertSink
from tests.support.net import free_port

pytestmark = pytest.mark.timeout(30)
NOW = datetime(2026, 11, 26, 10, 18, 30, tzinfo=UTC)
TOKEN = "tok-Zq81xv"  # what a receiver URL may carry


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def down(target: str = "eth-main", status: str = "firing", **labels: str) -> Alert:
    return Alert({"alertname": "TargetDown", "target": target, "severity": "critical",
                  "team": "core", **labels},
                 {"summary": f"{target} is down", "detail": "status 500, expected 200"},
                 "resolved" if status == "resolved" else "firing", NOW - timedelta(minutes=5),
                 NOW if status == "resolved" else None)


def note(firing: tuple[Alert, ...] = (), resolved: tuple[Alert, ...] = ()) -> Notification:
    return Notification("pager", "root:{alertname=\"TargetDown\"}",
                        {"alertname": "TargetDown"}, firing, resolved)


def test_payload_is_alertmanager_version_4() -> None:
    body = payload(note((down("eth-main"), down("eth-b", team="other")),
                        (down("eth-c", "resolved"),)),
                   NOW, "http://127.0.0.1:9300",
                   lambda t: "https://eth.example.com/rpc" if t == "eth-main" else "")
    assert set(body) == {"version", "groupKey", "truncatedAlerts", "status", "receiver",
                         "groupLabels", "commonLabels", "commonAnnotations", "externalURL",
                         "alerts"}
    assert (body["version"], body["status"], body["receiver"], body["truncatedAlerts"]) == (
        "4", "firing", "pager", 0)
    assert body["groupLabels"] == {"alertname": "TargetDown"}
    assert body["commonLabels"] == {"alertname": "TargetDown", "severity": "critical"}
    assert body["commonAnnotations"] == {"detail": "status 500, expected 200"}
    first, _, last = body["alerts"]
    assert set(first) == {"status", "labels", "annotations", "startsAt", "endsAt",
                          "generatorURL", "fingerprint"}
    assert first["startsAt"] == "2026-11-26T10:13:30Z" and first["endsAt"] == ZERO_TIME
    assert first["annotations"]["target_url"] == "https://eth.example.com/rpc"
    assert first["generatorURL"] == "http://127.0.0.1:9300/api/v1/alerts"
    assert first["fingerprint"] == down("eth-main").fingerprint
    assert (last["status"], last["endsAt"]) == ("resolved", "2026-11-26T10:18:30Z")
    only_resolved = payload(note(resolved=(down(status="resolved"),)), NOW)
    assert only_resolved["status"] == "resolved" and only_resolved["externalURL"] == ""


def test_retry_after_reads_seconds_and_dates() -> None:
    assert retry_after("7", NOW) == 7.0
    assert retry_after("Thu, 26 Nov 2026 10:19:00 GMT", NOW) == 30.0
    assert retry_after("soon", NOW) is None and retry_after(None, NOW) is None


def outbox(tmp_path: Path, receiver: WebhookReceiver, clock: Clock,
           *notes: Notification) -> tuple[Alerting, AlertStore]:
    store = AlertStore(tmp_path / "alerts.sqlite3")
    alerting = Alerting(Evaluator([], {}, {}), Router(RouteConfig(receiver="pager")), store,
                        {"pager": receiver}, clock=clock)
    items = []
    for n in notes:
        text, buttons = receiver.render(n)
        items.append(Outgoing("pager", "firing" if n.firing else "resolved", n.group_key,
                              [], text, buttons))
    store.enqueue(items, clock())
    return alerting, store


async def test_signed_posts_verify_and_retries_keep_the_webhook_id(
        tmp_path: Path, alert_sink: AlertSink, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret, clock = new_secret(), Clock()
    receiver = WebhookReceiver("pager", f"{alert_sink.url}/hook?token={TOKEN}", secret,
                               clock=clock)
    alerting, store = outbox(tmp_path, receiver, clock, note((down(),)),
                             note(resolved=(down(status="resolved"),)))
    try:
        alert_sink.answer(503)
        alert_sink.answer(429, "12")
        assert await alerting.send_next(receiver) == pytest.approx(5.0)  # the 503
        assert await alerting.send_next(receiver) == pytest.approx(5.0)  # not due yet
        clock.now += timedelta(seconds=5)
        assert await alerting.send_next(receiver) == pytest.approx(12.0)  # Retry-After
        clock.now += timedelta(seconds=12)
        assert await alerting.send_next(receiver) is None  # delivered
        assert await alerting.send_next(receiver) is None  # the resolved one
        assert await alerting.send_next(receiver) == 30.0  # nothing left
    finally:
        await receiver.close()
        store.close()
    assert len(alert_sink.posted) == 4
    ids = [p.headers["webhook-id"] for p in alert_sink.posted]
    assert ids[0] == ids[1] == ids[2] != ids[3]
    for p in alert_sink.posted:  # (the library's verification: the test below, real clock)
        assert p.path == "/hook" and p.headers["Content-Type"] == "application/json"
        assert p.headers["webhook-signature"].startswith("v1,")
    history = store_history(tmp_path)
    assert [(h["kind"], h["status"], h["attempts"]) for h in history] == [
        ("resolved", "sent", 1), ("firing", "sent", 3)]
    assert alert_sink.posted[2].json["status"] == "firing"
    assert alert_sink.posted[3].json["status"] == "resolved"
    assert secret not in caplog.text and TOKEN not in caplog.text
    assert secret[6:] not in caplog.text


def store_history(tmp_path: Path) -> list[dict[str, object]]:
    store = AlertStore(tmp_path / "alerts.sqlite3")
    try:
        return store.history()
    finally:
        store.close()


async def test_the_standardwebhooks_library_verifies_a_post(alert_sink: AlertSink) -> None:
    secret = new_secret()
    receiver = WebhookReceiver("pager", f"{alert_sink.url}/hook", secret)  # the real clock
    text, _ = receiver.render(note((down(),)))
    try:
        assert await receiver.send(queued(1, text)) == ("", 0)
    finally:
        await receiver.close()
    (posted,) = alert_sink.posted
    verified = Webhook(secret).verify(posted.body, posted.headers)
    assert verified["version"] == "4" and verified["alerts"][0]["labels"]["target"] == "eth-main"
    with pytest.raises(Exception, match=r"(?i)signature"):
        Webhook(new_secret()).verify(posted.body, posted.headers)


def queued(item_id: int, text: str) -> Queued:
    return Queued(item_id, "pager", "firing", text, (), 0)


async def test_unsigned_without_a_secret(alert_sink: AlertSink) -> None:
    receiver = WebhookReceiver("pager", alert_sink.url + "/")
    try:
        await receiver.send(queued(1, json.dumps({"version": "4"})))
    finally:
        await receiver.close()
    assert not any(h.startswith("webhook-") for h in
                   (k.lower() for k in alert_sink.posted[0].headers))


@pytest.mark.parametrize(("status", "retry"), [(400, None), (404, None), (410, None),
                                               (301, None), (408, 5.0), (500, 5.0),
                                               (502, 5.0)])
async def test_answers_map_to_retry_or_failure(alert_sink: AlertSink, status: int,
                                               retry: float | None) -> None:
    receiver = WebhookReceiver("pager", f"{alert_sink.url}/x?token={TOKEN}", new_secret())
    alert_sink.answer(status)
    try:
        with pytest.raises(NotifyError) as caught:
            await receiver.send(queued(1, "{}"))
    finally:
        await receiver.close()
    assert caught.value.retry_after == retry
    assert f"HTTP {status}" in str(caught.value) and TOKEN not in str(caught.value)
    assert "pager" in str(caught.value) and "127.0.0.1" in str(caught.value)


async def test_unreachable_and_failed_for_good_through_the_loop(
        tmp_path: Path, alert_sink: AlertSink) -> None:
    clock = Clock()
    dead = WebhookReceiver("pager", f"http://127.0.0.1:{free_port()}/?token={TOKEN}",
                           clock=clock)
    try:
        with pytest.raises(NotifyError) as caught:
            await dead.send(queued(1, "{}"))
    finally:
        await dead.close()
    assert caught.value.retry_after == 5.0 and TOKEN not in str(caught.value)
    assert caught.value.__cause__ is None  # aiohttp's own text would quote the URL

    receiver = WebhookReceiver("pager", f"{alert_sink.url}/hook", clock=clock)
    alerting, store = outbox(tmp_path, receiver, clock, note((down(),)))
    alert_sink.answer(422)
    try:
        assert await alerting.send_next(receiver) is None
    finally:
        await receiver.close()
        store.close()
    (item,) = store_history(tmp_path)
    assert (item["status"], item["attempts"]) == ("failed", 1)
    assert "HTTP 422" in str(item["error"])


def test_a_malformed_secret_is_refused_without_quoting_it() -> None:
    with pytest.raises(ValueError) as caught:
        WebhookReceiver("pager", "http://127.0.0.1/", "whsec_not*base64*at*all")
    assert "not*base64" not in str(caught.value)


def test_webhook_ids_differ_per_item_and_receiver() -> None:
    a, b = WebhookReceiver("a", "http://127.0.0.1/"), WebhookReceiver("b", "http://127.0.0.1/")
    assert a.message_id(queued(1, "x")) == a.message_id(queued(1, "x"))
    assert len({a.message_id(queued(1, "x")), a.message_id(queued(2, "x")),
                a.message_id(queued(1, "y")), b.message_id(queued(1, "x"))}) == 4


@pytest.mark.parametrize(("receiver", "error"), [
    ({"type": "webhook"},
     "alerts.receivers[0].url: is required for a receiver of type webhook (got a str)"),
    ({"type": "webhook", "url": "ftp://x"},
     "alerts.receivers[0].url: must be an http:// or https:// URL with a host (got a str)"),
    ({"type": "webhook", "url": "http://127.0.0.1/", "secret": "whsec_%%%%"},
     "alerts.receivers[0].secret: a secret must be \"whsec_\" followed by base64 (got a str)"),
    ({"type": "webhook", "url": "http://127.0.0.1/", "chat_id": "-100"},
     "alerts.receivers[0].chat_id: is for receivers of type telegram, not webhook (got a str)"),
    ({"chat_id": "-100", "url": "http://127.0.0.1/"},
     "alerts.receivers[0].url: is for receivers of type webhook, not telegram (got a str)"),
])
def test_webhook_receiver_config_errors_name_key_and_hide_secrets(
        receiver: dict[str, str], error: str) -> None:
    d = Decoder()
    assert d.table(AlertsSection, {"receivers": [{"name": "pager", **receiver}]},
                   "alerts") is None
    assert [str(i) for i in d.issues] == [error]


def test_webhook_receiver_config_and_monitor_wiring(tmp_path: Path) -> None:
    secret = new_secret()
    d = Decoder()
    section = d.table(AlertsSection, {"receivers": [
        {"name": "pager", "type": "webhook", "url": "env:HOOK_URL", "secret": "env:HOOK_SECRET"}]},
        "alerts")
    assert d.issues == [] and section is not None
    env = {"HOOK_URL": "http://127.0.0.1:9/hook", "HOOK_SECRET": secret}
    alerting = MonitorAlerting(section, tmp_path, [], CollectorRegistry(), env, False)
    try:
        receiver = alerting.receivers["pager"]
        assert isinstance(receiver, WebhookReceiver) and receiver.signed
        assert alerting.bots == {}  # a bot only for Telegram receivers
    finally:
        alerting.store.close()
    with pytest.raises(SecretError) as caught:
        MonitorAlerting(section, tmp_path / "b", [], CollectorRegistry(),
                        {**env, "HOOK_SECRET": "whsec_short"}, False)
    assert "alerts.receivers[0].secret: environment variable HOOK_SECRET" in str(caught.value)
    assert "whsec_short" not in str(caught.value)
