"""The Telegram notifier: messages built from hostile alerts stay valid HTML within Telegram's
limits, and the sender, against the fake Bot API, maps every documented answer to a
NotifyError, follows chat migrations, round-trips commands and button presses, and never lets
the bot token reach a log line or an error.
"""

from __future__ import annotations

import asyncio
import logging
import re
import traceback
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
import pytest_asyncio

from alerts import NotifyError
from alerts.model import Alert, Notification
from alerts.telegram import Callback, Command, TelegramSender
from alerts.telegram_errors import REDACTED, RETRY_HINT, TokenFilter, redact
from alerts.telegram_format import (
    MAX_TEXT,
    Message,
    callback_data,
    escape,
    format_notification,
    parse_callback,
    short_duration,
    tg_len,
)
from tests.support.fake_telegram import ApiError, FakeTelegram, parse_html
from tests.support.net import free_port

pytestmark = [
    pytest.mark.timeout(30),
    # ptb 22 warns inside RetryAfter itself about the coming timedelta type
    pytest.mark.filterwarnings("ignore:.*retry_after.*:DeprecationWarning"),
]

NOW = datetime(2026, 11, 26, 10, 18, 30, tzinfo=UTC)
CHAT = "-1001234567890"


def alert(name: str = "NodeLagging", target: str = "eth-main", severity: str = "critical",
          status: str = "firing", summary: str = "eth-main is 42 blocks behind",
          value: str = "block_lag = 42", started: timedelta = timedelta(minutes=3, seconds=30),
          **labels: str) -> Alert:
    return Alert(
        labels={"alertname": name, "target": target, "severity": severity, **labels},
        annotations={"summary": summary, "value": value},
        status="firing" if status == "firing" else "resolved",
        starts_at=NOW - started,
        ends_at=NOW if status == "resolved" else None)


def group(firing: tuple[Alert, ...] = (), resolved: tuple[Alert, ...] = (),
          labels: dict[str, str] | None = None) -> Notification:
    return Notification("oncall", "route/NodeLagging", labels or {"alertname": "NodeLagging"},
                        firing, resolved)


def assert_valid(text: str) -> str:
    """The text Telegram would show; fails as the real API would on bad HTML or length."""
    assert tg_len(text) <= MAX_TEXT
    return parse_html(text)


# ---- formatting ----

def test_tg_len_counts_utf16_units() -> None:
    assert tg_len("abc") == 3
    assert tg_len("🔴") == 2
    assert tg_len("é✅") == 2  # both in the BMP
    assert tg_len("👨‍👩‍👧") == 8


def test_firing_message_says_what_where_since_and_value() -> None:
    a = alert()
    msg = format_notification(group((a,)), NOW)
    shown = assert_valid(msg.text)
    assert shown.startswith("🔴 FIRING · CRITICAL · NodeLagging\n")
    assert "eth-main is 42 blocks behind" in shown
    assert shown.count("eth-main") == 2  # the headline and the /silence hint
    assert "value" not in shown  # the summary says 42 already
    quiet = alert(summary="eth-main lags")
    assert "value block_lag = 42" in assert_valid(format_notification(group((quiet,)), NOW).text)
    assert "since 2026-11-26 10:15 UTC (for 3m)" in shown
    assert "/silence eth-main 1h" in shown
    assert msg.buttons == (("Silence 1h", f"s1h:{a.fingerprint}"), ("Ack", f"ack:{a.fingerprint}"))
    assert all(len(data.encode()) <= 64 for _, data in msg.buttons)
    assert parse_callback(msg.buttons[0][1]) == ("s1h", a.fingerprint)
    assert parse_callback("other:x") is None


def test_resolved_message_says_how_long_it_lasted() -> None:
    msg = format_notification(group(resolved=(alert(status="resolved",
                                                    started=timedelta(minutes=12)),)), NOW)
    shown = assert_valid(msg.text)
    assert shown.startswith("✅ RESOLVED · CRITICAL · NodeLagging\n")
    assert "NodeLagging on eth-main is over after 12m" in shown
    assert "2026-11-26 10:06 UTC → 2026-11-26 10:18 UTC" in shown
    assert "FIRING" not in shown and "42 blocks behind" not in shown
    assert "/silence" not in shown
    assert msg.buttons == ()


def test_mixed_group_has_both_sections_and_worst_severity() -> None:
    firing = (alert(severity="warning", target="a"), alert(severity="critical", target="b"))
    msg = format_notification(group(firing, (alert(status="resolved", target="c"),)), NOW)
    shown = assert_valid(msg.text)
    assert shown.startswith("🔴 FIRING · CRITICAL · NodeLagging · 2 alerts")
    assert "✅ RESOLVED (1)" in shown
    assert msg.buttons[0][1] == f"s1h:{firing[0].fingerprint}"
    assert "/silence NodeLagging 1h" in shown  # two targets, one rule


def test_hostile_values_are_escaped_clipped_and_valid() -> None:
    script = "<script>alert('x')</script> & <b>not bold</b> &amp; &#0; 🔥"
    huge = "&<>🚨" * 2500  # 10 000 characters, each one escaped or two UTF-16 units
    a = Alert(labels={"alertname": script, "target": huge, "severity": "<i>crit</i>",
                      "type": "ethereum"},
              annotations={"summary": huge, "value": script, "detail": huge},
              starts_at=NOW - timedelta(days=3, hours=4))
    msg = format_notification(Notification("oncall", "k", {"alertname": script, "x": huge},
                                           (a,)), NOW)
    shown = assert_valid(msg.text)
    assert "<script>" not in msg.text and "<b>not bold</b>" not in msg.text
    assert script in shown  # shown literally, as text
    assert "…" in shown  # the 10 KB strings were clipped
    assert "for 3d 4h" in shown


@pytest.mark.parametrize("filler", ["x", "&", "🚨", "<&>é"])
def test_many_alerts_stay_within_the_limit_with_a_count_of_the_rest(filler: str) -> None:
    firing = tuple(alert(target=f"node-{i}-{filler * 200}", summary=filler * 400,
                         value=filler * 200) for i in range(300))
    resolved = tuple(alert(status="resolved", target=f"old-{i}") for i in range(50))
    msg = format_notification(group(firing, resolved), NOW)
    shown = assert_valid(msg.text)
    shown_alerts = len(re.findall(r"^• ", shown, re.MULTILINE))
    more = re.search(r"… and (\d+) more\n\n🔕 /silence", shown)
    assert more is not None, shown[-200:]
    assert shown_alerts >= 1
    assert shown_alerts + int(more.group(1)) == 350


def test_every_alert_shown_when_they_fit() -> None:
    firing = tuple(alert(target=f"node-{i}") for i in range(5))
    shown = assert_valid(format_notification(group(firing), NOW).text)
    assert len(re.findall(r"^• ", shown, re.MULTILINE)) == 5
    assert "more" not in shown


def test_escape_clips_before_escaping() -> None:
    out = escape("&" * 400)
    assert out.endswith("&amp;…") and out.count("&amp;") == 59 and tg_len(out) <= 300
    assert escape("<b>", None) == "&lt;b&gt;"
    assert short_duration(59) == "59s" and short_duration(7500) == "2h 5m"
    with pytest.raises(ValueError):
        callback_data("s1h", "f" * 70)


def test_fake_validator_follows_telegram_html_rules() -> None:
    assert parse_html('<b>a</b> <a href="https://x">l</a> <span class="tg-spoiler">s</span>'
                      ' <pre><code class="language-py">1 &lt; 2</code></pre> &#128308;'
                      ) == "a l s 1 < 2 🔴"
    for bad in ("<b>open", "</b>", "<b><i>x</b></i>", "<script>x</script>", "a & b", "<br>",
                "<span>x</span>", "a > b", "&nbsp;", "<code><b>x</b></code>", "<b"):
        with pytest.raises(ApiError) as info:
            parse_html(bad)
        assert info.value.description.startswith("Bad Request: can't parse entities"), bad


# ---- the sender against the fake Bot API ----

@pytest_asyncio.fixture
async def sender(fake_telegram: FakeTelegram) -> AsyncIterator[TelegramSender]:
    s = TelegramSender(fake_telegram.token, CHAT, api_url=fake_telegram.url, timeout=5.0)
    await s.start()
    yield s
    await s.close()


async def test_send_delivers_html_with_buttons(fake_telegram: FakeTelegram,
                                               sender: TelegramSender) -> None:
    msg = format_notification(group((alert(),)), NOW)
    sent = await sender.send(msg)
    [got] = fake_telegram.sent
    assert (sent.chat_id, sent.message_id) == (CHAT, got.message_id)
    assert got.chat_id == CHAT and got.text == msg.text and got.parse_mode == "HTML"
    assert got.message_thread_id is None
    assert got.reply_markup == {"inline_keyboard": [[
        {"text": label, "callback_data": data} for label, data in msg.buttons]]}


async def test_send_to_a_forum_topic(fake_telegram: FakeTelegram) -> None:
    s = TelegramSender(fake_telegram.token, CHAT, message_thread_id=7, api_url=fake_telegram.url)
    await s.start()
    try:
        await s.send(Message("<b>hi</b>"))
    finally:
        await s.close()
    assert fake_telegram.sent[0].message_thread_id == 7
    assert fake_telegram.sent[0].reply_markup is None


async def test_flood_wait_gives_telegrams_retry_after(fake_telegram: FakeTelegram,
                                                      sender: TelegramSender) -> None:
    fake_telegram.fail("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
    with pytest.raises(NotifyError) as info:
        await sender.send(Message("x"))
    assert info.value.retry_after == 7.0
    assert fake_telegram.sent == []
    await sender.send(Message("x"))  # the next try goes through
    assert len(fake_telegram.sent) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retryable(fake_telegram: FakeTelegram, sender: TelegramSender,
                                           status: int) -> None:
    fake_telegram.fail("sendMessage", status, "Internal Server Error")
    with pytest.raises(NotifyError) as info:
        await sender.send(Message("x"))
    assert info.value.retry_after == RETRY_HINT


async def test_timeout_is_retryable(fake_telegram: FakeTelegram) -> None:
    s = TelegramSender(fake_telegram.token, CHAT, api_url=fake_telegram.url, timeout=0.3)
    await s.start()
    fake_telegram.fail("sendMessage", 500, "slow", delay=2.0)
    try:
        with pytest.raises(NotifyError) as info:
            await s.send(Message("x"))
    finally:
        await s.close()
    assert info.value.retry_after == RETRY_HINT
    assert "TimedOut" in str(info.value)


async def test_unreachable_api_is_retryable() -> None:
    s = TelegramSender("123:secret-token", CHAT, api_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(NotifyError) as info:
        await s.start()
    await s.close()
    assert info.value.retry_after == RETRY_HINT
    assert "secret-token" not in "".join(traceback.format_exception(info.value))


@pytest.mark.parametrize("via", ["migrated chat", "forced answer"])
async def test_migration_follows_the_new_chat(fake_telegram: FakeTelegram, via: str) -> None:
    new = "-1009876543210"
    seen: list[tuple[str, str]] = []

    async def persist(old: str, new_id: str) -> None:
        seen.append((old, new_id))

    s = TelegramSender(fake_telegram.token, "-4001", api_url=fake_telegram.url,
                       on_migrate=persist)
    await s.start()
    if via == "migrated chat":
        fake_telegram.migrate_chat("-4001", new)
    else:
        fake_telegram.fail("sendMessage", 400,
                           "Bad Request: group chat was upgraded to a supergroup chat",
                           migrate_to_chat_id=int(new))
    try:
        sent = await s.send(Message("<b>down</b>"))
        assert (sent.chat_id, s.chat_id, seen) == (new, new, [("-4001", new)])
        await s.send(Message("again"))  # straight to the new chat
    finally:
        await s.close()
    assert [m.chat_id for m in fake_telegram.sent] == [new, new]
    assert [m for m, _ in fake_telegram.calls].count("sendmessage") == 3


async def test_bad_requests_are_not_retryable(fake_telegram: FakeTelegram,
                                              sender: TelegramSender) -> None:
    for text, reason in (("<b>unclosed", "parse entities"), ("a & b", "parse entities"),
                         ("x" * 4097, "too long"), ("🔥" * 2049, "too long")):
        with pytest.raises(NotifyError) as info:
            await sender.send(Message(text))
        assert info.value.retry_after is None
        assert reason in str(info.value).lower()
    await sender.send(Message("🔥" * 2048))  # exactly 4096 units
    fake_telegram.kick(CHAT)
    with pytest.raises(NotifyError) as info:
        await sender.send(Message("x"))
    assert info.value.retry_after is None and "Forbidden" in str(info.value)


async def test_wrong_token_is_not_retryable_and_never_shown(fake_telegram: FakeTelegram) -> None:
    token = "111:WRONG-but-secret"
    s = TelegramSender(token, CHAT, api_url=fake_telegram.url)
    with pytest.raises(NotifyError) as info:
        await s.start()
    await s.close()
    assert info.value.retry_after is None
    assert token not in "".join(traceback.format_exception(info.value))
    assert REDACTED in str(info.value)  # ptb names the token it was given; we hide it


async def test_token_never_reaches_logs_or_errors(fake_telegram: FakeTelegram,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    token = fake_telegram.token
    caplog.set_level(logging.DEBUG)
    errors: list[NotifyError] = []
    s = TelegramSender(token, CHAT, api_url=fake_telegram.url, timeout=0.3)
    await s.start()
    assert logging.getLogger("httpx").level == logging.WARNING
    # a test (or an operator) may turn httpx up again: the filter still hides the URL
    for name in ("httpx", "httpcore", "telegram"):
        caplog.set_level(logging.DEBUG, logger=name)
    try:
        await s.send(Message("ok"))
        for status, kw in ((429, {"retry_after": 1}), (500, {}), (400, {}),
                           (500, {"delay": 1.0})):
            fake_telegram.fail("sendMessage", status, f"Error {status}", **kw)
            try:
                await s.send(Message("x"))
            except NotifyError as exc:
                errors.append(exc)
        fake_telegram.add_command(CHAT, "/status")
        assert len(await s.updates(timeout=1)) == 1
        logging.getLogger("someone.else").warning("leaked %s", f"{fake_telegram.url}/bot{token}")
        try:
            raise RuntimeError(f"boom bot{token}")
        except RuntimeError:
            logging.getLogger("httpx").exception("while calling")
    finally:
        await s.close()
    assert len(errors) == 4
    for error in errors:
        assert token not in "".join(traceback.format_exception(error))
    text = "\n".join(logging.Formatter().format(r) for r in caplog.records)
    assert token not in text and token not in caplog.text
    # httpx did log its request lines, with the URL's token hidden
    requests = [r.getMessage() for r in caplog.records if r.name == "httpx"
                and r.getMessage().startswith("HTTP Request: POST")]
    assert requests and all(f"/bot{REDACTED}/" in line for line in requests)
    assert any(REDACTED in line for line in text.splitlines() if "leaked" in line)
    assert "boom bot<redacted>" in text  # the traceback of a logged exception too
    # close() takes its filters off again
    assert not any(isinstance(f, TokenFilter) for f in logging.getLogger("httpx").filters)


async def test_a_forum_topic_and_an_api_url_with_a_slash(fake_telegram: FakeTelegram) -> None:
    s = TelegramSender(fake_telegram.token, CHAT, message_thread_id=3,
                       api_url=fake_telegram.url + "/")
    await s.start()
    try:
        await s.send(Message("hi"))
    finally:
        await s.close()
    assert (fake_telegram.sent[0].chat_id, fake_telegram.sent[0].message_thread_id) == (CHAT, 3)


async def test_a_second_poller_ends_the_first(fake_telegram: FakeTelegram,
                                              sender: TelegramSender) -> None:
    """As when two processes poll with one token."""
    first = asyncio.create_task(sender.updates(timeout=5))
    await asyncio.sleep(0.2)
    other = TelegramSender(fake_telegram.token, CHAT, api_url=fake_telegram.url)
    await other.start()
    try:
        assert await other.updates(timeout=0) == []
    finally:
        await other.close()
    with pytest.raises(NotifyError) as info:
        await asyncio.wait_for(first, 3)
    assert info.value.retry_after == RETRY_HINT and "Conflict" in str(info.value)


def test_redact_and_filter() -> None:
    token = "123:A/b+c"
    assert redact(f"x{token}y 123%3AA%2Fb%2Bc", token) == f"x{REDACTED}y {REDACTED}"
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "url %s %d", (token, 5), None)
    assert TokenFilter(token).filter(record)
    assert record.getMessage() == f"url {REDACTED} 5"


async def test_commands_round_trip_and_offsets_advance(fake_telegram: FakeTelegram,
                                                       sender: TelegramSender) -> None:
    first = fake_telegram.add_command(CHAT, "/status")
    fake_telegram.add_command(CHAT, "just chatting")  # not a command: skipped, but confirmed
    got = await sender.updates(timeout=1)
    assert got == [Command(first, CHAT, "@alice", "/status")]
    assert sender.next_offset == first + 2
    assert await sender.updates(timeout=0) == []
    assert fake_telegram.updates == []  # the offset confirmed both

    # a long poll returns as soon as something arrives
    poll = asyncio.create_task(sender.updates(timeout=10))
    await asyncio.sleep(0.2)
    fake_telegram.add_command("555", "/alerts", username=None, user_id=555)
    got = await asyncio.wait_for(poll, 3)
    assert [(c.chat_id, c.user, c.text) for c in got if isinstance(c, Command)] == [
        ("555", "555", "/alerts")]


async def test_button_press_round_trip(fake_telegram: FakeTelegram,
                                       sender: TelegramSender) -> None:
    a = alert()
    sent = await sender.send(format_notification(group((a,)), NOW))
    query_id = fake_telegram.add_callback(fake_telegram.sent[0], f"ack:{a.fingerprint}")
    [press] = await sender.updates(timeout=1)
    assert isinstance(press, Callback)
    assert (press.callback_id, press.chat_id, press.message_id, press.user, press.data) == (
        query_id, CHAT, sent.message_id, "@alice", f"ack:{a.fingerprint}")

    await sender.answer_callback(press.callback_id, "Acknowledged")
    assert fake_telegram.answered == [
        {"callback_query_id": query_id, "text": "Acknowledged", "show_alert": False}]
    with pytest.raises(NotifyError) as info:  # a query is answered once
        await sender.answer_callback(press.callback_id, "again")
    assert info.value.retry_after is None

    await sender.edit(press.chat_id, press.message_id, "<b>acked</b> by @alice")
    await sender.edit(press.chat_id, press.message_id, "<b>acked</b> by @alice")  # unchanged
    assert [e["text"] for e in fake_telegram.edits] == ["<b>acked</b> by @alice"]
    assert fake_telegram.edits[0]["reply_markup"] is None  # buttons gone
    with pytest.raises(NotifyError) as info:
        await sender.edit(CHAT, 999_999, "x")
    assert info.value.retry_after is None and "not found" in str(info.value)


async def test_fake_speaks_bot_api_shapes(fake_telegram: FakeTelegram) -> None:
    base = f"{fake_telegram.url}/bot{fake_telegram.token}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake_telegram.url}/bot1:nope/getMe") as r:
            assert (r.status, await r.json()) == (
                401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        async with http.post(f"{base}/noSuchMethod") as r:
            assert r.status == 404
        async with http.post(f"{base}/sendMessage",
                             json={"chat_id": int(CHAT), "text": "<b>j</b>",
                                   "parse_mode": "HTML", "message_thread_id": 3}) as r:
            body = await r.json()
            assert body["ok"] is True and body["result"]["text"] == "j"
        async with http.post(f"{base}/SENDMESSAGE",
                             data={"chat_id": CHAT, "text": "f"}) as r:
            assert (await r.json())["ok"] is True
        fake_telegram.fail("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
        async with http.post(f"{base}/sendMessage", data={"chat_id": CHAT, "text": "f"}) as r:
            assert (r.status, await r.json()) == (429, {
                "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 3",
                "parameters": {"retry_after": 3}})
    assert [(m.chat_id, m.message_thread_id) for m in fake_telegram.sent] == [
        (CHAT, 3), (CHAT, None)]
