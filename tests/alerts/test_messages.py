"""Messages to act on at 3 am: the built-in rules, evaluated on real probe values, word each
failure plainly ("eth-main: HTTP 500, expected 200", "eth-main is 12 blocks behind eth-ref");
a RESOLVED says what recovered and after how long, never the firing headline; links are
http(s) only; a RESOLVED is a new message replying to its FIRING, never an edit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from alerts.alerting import Alerting
from alerts.builtin import BUILTINS
from alerts.evaluate import Evaluator
from alerts.headline import headline, recovered
from alerts.model import Alert, Notification
from alerts.routing import Router
from alerts.store import AlertStore
from alerts.telegram import TelegramSender
from alerts.telegram_format import MAX_TEXT, format_notification, tg_len
from alerts.telegram_receiver import TelegramReceiver
from monitor.config import RouteConfig
from tests.support.fake_telegram import FakeTelegram, parse_html

pytestmark = pytest.mark.timeout(30)
T0 = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
CHAT = "-1001234567890"
LABELS = {"type": "ethereum", "team": "core", "chain": "ethereum"}


def fire(values: dict[str, Any], detail: str, reason: str) -> Alert:
    """Feeds the built-in rules one probe result every 10 s until an alert fires."""
    ev = Evaluator(list(BUILTINS), {}, {"eth-main": LABELS})
    failing = {"success": not reason, "failure_reason": reason, "duration_seconds": 0.1,
               **values}
    for i in range(40):
        changes = ev.observe("eth-main", LABELS, failing, T0 + timedelta(seconds=10 * i),
                             detail)
        if any(t.change == "firing" for t in changes):
            return next(t.alert for t in changes if t.change == "firing")
    raise AssertionError("nothing fired")


@pytest.mark.parametrize(("values", "detail", "reason", "expected"), [
    ({"status_code": 500}, "status 500, expected 200", "status",
     "eth-main: HTTP 500, expected 200"),
    ({}, "timed out after 5s connecting (connect)", "timeout",
     "eth-main: timed out after 5s connecting"),
    ({}, "connection refused by 127.0.0.1:8545", "refused", "eth-main: connection refused"),
    ({}, "certificate verify failed", "tls", "eth-main: TLS failed"),
    ({"block_lag": 12, "head_age_seconds": 3.0},
     "12 blocks behind reference eth-ref (at most 5)", "lag",
     "eth-main is 12 blocks behind eth-ref"),
    ({"block_lag": 0, "head_age_seconds": 400.0},
     "head block 19000000 is 400s old (at most 180s)", "stale",
     "eth-main: head block 19000000 is 400s old"),
    ({"peers": 1}, "1 peers, at least 4 wanted", "peers",
     "eth-main has 1 peers, at least 4 wanted"),
])
def test_each_failure_has_a_plain_headline(values: dict[str, Any], detail: str, reason: str,
                                           expected: str) -> None:
    a = fire(values, detail, reason)
    assert headline(a) == expected
    shown = parse_html(format_notification(Notification("oncall", "g", {}, (a,)),
                                           T0 + timedelta(hours=1)).text)
    assert shown.splitlines()[2] == expected
    assert "success = false" not in shown and "down: " not in shown


def test_a_lag_the_probe_itself_accepts_still_reads_plainly() -> None:
    # the probe allows 20 blocks, the rule 5: no probe failure to word, the summary speaks
    a = fire({"block_lag": 12, "head_age_seconds": 3.0}, "", "")
    assert a.name == "NodeLagging"
    assert headline(a) == "eth-main is 12 blocks behind its reference"


def test_a_custom_rule_speaks_with_its_summary_not_the_probe_failure() -> None:
    a = Alert({"alertname": "FewPeers", "target": "eth-main"},
              {"summary": "eth-main: only 2 peers", "condition": "peers < 3",
               "failure_reason": "status", "detail": "status 500, expected 200"})
    assert headline(a) == "eth-main: only 2 peers"


def test_resolved_says_what_recovered_and_after_how_long() -> None:
    a = fire({"status_code": 500}, "status 500, expected 200", "status")
    end = T0 + timedelta(minutes=47)
    gone = Alert(a.labels, a.annotations, "resolved", a.starts_at, end)
    shown = parse_html(format_notification(Notification("oncall", "g", {}, (), (gone,)),
                                           end).text)
    assert shown.startswith("✅ RESOLVED · CRITICAL · TargetDown\n")
    assert "eth-main is up again after 47m" in shown  # (fired after the third failure)
    assert "HTTP 500" not in shown and "FIRING" not in shown
    lag = Alert({"alertname": "NodeLagging", "target": "eth-main"},
                {"condition": "block_lag > 5"}, "resolved")
    assert recovered(lag) == "eth-main has caught up"
    assert recovered(Alert({"alertname": "DiskFull"}, {}, "resolved")) == "DiskFull is over"


def test_labels_url_links_and_hostile_links() -> None:
    a = Alert({"alertname": "TargetDown", "target": "eth-main", "severity": "critical",
               "team": "core", "chain": "ethereum", "type": "ethereum"},
              {"summary": "x", "runbook_url": "https://wiki.example.com/run?a=1&b=\"2\"",
               "dashboard_url": "javascript:alert(1)"}, starts_at=T0)
    text = format_notification(Notification("oncall", "g", {}, (a,)), T0,
                               lambda t: "https://eth.example.com/rpc").text
    shown = parse_html(text)
    assert '<a href="https://wiki.example.com/run?a=1&amp;b=&quot;2&quot;">' in text
    assert "javascript" not in text and "Dashboard" not in shown
    assert "🔗 https://eth.example.com/rpc" in shown
    assert "🏷 chain=ethereum · team=core" in shown
    assert tg_len(text) <= MAX_TEXT


@pytest_asyncio.fixture
async def telegram(fake_telegram: FakeTelegram) -> AsyncIterator[TelegramReceiver]:
    sender = TelegramSender(fake_telegram.token, CHAT, api_url=fake_telegram.url)
    receiver = TelegramReceiver("oncall", sender)
    yield receiver
    await receiver.close()


async def test_resolved_is_a_new_message_replying_to_the_firing_one(
        tmp_path: Path, fake_telegram: FakeTelegram, telegram: TelegramReceiver) -> None:
    clock = [T0]
    store = AlertStore(tmp_path / "alerts.sqlite3")
    rules = [r for r in BUILTINS if r.name == "TargetDown"]
    alerting = Alerting(Evaluator(rules, {}, {"eth-main": LABELS}),
                        Router(RouteConfig(receiver="oncall", group_wait=0.0,
                                           group_interval=1.0)),
                        store, {"oncall": telegram}, clock=lambda: clock[0])
    try:
        def step(success: bool) -> None:
            clock[0] += timedelta(seconds=10)
            alerting.observe("eth-main", LABELS,
                             {"success": success, "failure_reason": "" if success else "status"},
                             "" if success else "status 500, expected 200")

        async def flush_and_send() -> None:
            await alerting.flush()
            while await alerting.send_next(telegram) is None:
                pass

        for _ in range(3):
            step(False)
        await flush_and_send()
        for _ in range(2):
            step(True)
        clock[0] += timedelta(seconds=2)
        await flush_and_send()
    finally:
        store.close()
    firing, resolved = fake_telegram.sent
    assert parse_html(firing.text).startswith("🔴 FIRING") and firing.reply_to is None
    assert parse_html(resolved.text).startswith("✅ RESOLVED")
    assert resolved.reply_to == firing.message_id and resolved.message_id != firing.message_id
    assert fake_telegram.edits == []  # never an edit


async def test_a_reply_to_a_deleted_firing_is_still_sent(fake_telegram: FakeTelegram,
                                                         telegram: TelegramReceiver) -> None:
    await telegram.ready()
    sent = await telegram.sender.send(format_notification(
        Notification("oncall", "g", {}, (), (Alert({"alertname": "X"}, {}, "resolved"),)),
        T0), reply_to=999_999)
    assert fake_telegram.sent[-1].reply_to == 999_999 and sent.message_id > 0


def test_a_custom_rule_on_the_status_code_reads_the_probe_failure() -> None:
    a = Alert({"alertname": "SiteBroken", "target": "shop"},
              {"condition": "status_code >= 500", "failure_reason": "status",
               "detail": "status 503, expected 2xx"})
    assert headline(a) == "shop: HTTP 503, expected 2xx"
