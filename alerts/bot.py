"""The on-call bot: commands and button presses from Telegram, obeyed only in allowed chats.

    /status                                   targets down and alerts firing
    /alerts                                   every pending and firing alert, muted or not
    /silence <target or alertname> <duration> [reason]
    /unsilence <silence id, target or alertname>

Buttons on firing messages: "Silence 1h" silences that alert's target and rule; "Ack" marks
the message as taken. Commands from any other chat get no answer (and a log line).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from alerts import NotifyError
from alerts.alerting import Alerting
from alerts.model import Alert
from alerts.silences import Silence, SilenceError, silence_for, silence_id
from alerts.telegram import Callback, Command, TelegramSender
from alerts.telegram_format import (
    ACK,
    SILENCE_1H,
    Message,
    escape,
    parse_callback,
    short_duration,
    utc,
)
from core.clock import Clock, utc_now

log = logging.getLogger(__name__)
OFFSET_DOC = "telegram-offset:"
USAGE = ("<b>Commands</b>\n/status — targets down and alerts firing\n/alerts — every alert\n"
         "/silence &lt;target or alertname&gt; &lt;duration&gt; [reason] — e.g. "
         "<code>/silence eth-main 2h node upgrade</code>\n"
         "/unsilence &lt;silence id, target or alertname&gt;")
Down = tuple[str, str, datetime | None]  # target, why, since


class OnCallBot:
    def __init__(self, name: str, alerting: Alerting, sender: TelegramSender,
                 allowed_chats: Sequence[str], targets: Sequence[str],
                 down: Callable[[], list[Down]],
                 clock: Clock = utc_now) -> None:
        self.name, self.alerting, self.sender = name, alerting, sender
        self._allowed = {str(c) for c in allowed_chats}
        self._targets, self._down, self._clock = list(targets), down, clock

    def set_targets(self, targets: Sequence[str]) -> None:
        """The target names after a config reload (for /status and /silence)."""
        self._targets = list(targets)

    async def run(self) -> None:
        """Long-poll for updates until cancelled; the offset survives restarts."""
        store = self.alerting.store
        offset = await asyncio.to_thread(store.get, OFFSET_DOC + self.name)
        failures = 0
        while True:
            try:
                items = await self.sender.updates(offset, timeout=25)
            except NotifyError as exc:
                failures += 1
                wait = exc.retry_after or min(60.0, 2.0 ** failures)
                log.warning("bot %s: cannot read updates (%s); again in %.0f s", self.name,
                            exc, wait)
                await asyncio.sleep(wait)
                continue
            failures = 0
            for item in items:
                try:
                    await self.handle(item)
                except NotifyError as exc:  # a reply that did not go out is not fatal
                    log.warning("bot %s: could not answer: %s", self.name, exc)
            if self.sender.next_offset is not None and self.sender.next_offset != offset:
                offset = self.sender.next_offset
                await asyncio.to_thread(store.put, OFFSET_DOC + self.name, offset)

    async def handle(self, item: Command | Callback) -> None:
        if item.chat_id not in self._allowed:
            log.info("bot %s: ignored %s from chat %s (not in command_chat_ids)", self.name,
                     "a command" if isinstance(item, Command) else "a button", item.chat_id)
            if isinstance(item, Callback):
                await self.sender.answer_callback(item.callback_id, "Not allowed here")
            return
        if isinstance(item, Callback):
            await self._button(item)
            return
        words = item.text.split()
        command = words[0].split("@", 1)[0].lower() if words else ""
        args = words[1:]
        if command == "/status":
            reply = self.status()
        elif command == "/alerts":
            reply = self.alerts()
        elif command == "/silence":
            reply = await self.silence(args, item.user)
        elif command == "/unsilence":
            reply = await self.unsilence(args)
        else:
            reply = USAGE
        await self.sender.send(Message(reply), chat_id=item.chat_id)

    # --- commands --------------------------------------------------------------------------
    def status(self) -> str:
        down = self._down()
        firing = [a for a, phase, _ in self.alerting.current() if phase == "firing"]
        total = len(self._targets)
        lines = [f"🟢 All {total} targets up" if not down
                 else f"🔴 {len(down)} of {total} targets down"]
        now = self._clock()
        for name, why, since in down[:30]:
            age = f" for {short_duration((now - since).total_seconds())}" if since else ""
            lines.append(f"• <b>{escape(name)}</b> — {escape(why)}{age}")
        lines.append(f"\n{'🔔' if firing else '🔕'} {len(firing)} alert(s) firing")
        for a in firing[:30]:
            lines.append(f"• {escape(a.name)} on {escape(a.labels.get('target', '-'))}")
        return "\n".join(lines)

    def alerts(self) -> str:
        current = self.alerting.current()
        if not current:
            return "✅ No alerts."
        now = self._clock()
        lines = [f"<b>{len(current)} alert(s)</b>"]
        for a, phase, muted in current[:40]:
            icon = "🔴" if phase == "firing" else "🟡"
            age = (now - a.starts_at).total_seconds() if a.starts_at else None
            since = f", {short_duration(age)}" if age is not None else ""
            mute = f" — <i>{escape(muted)}</i>" if muted else ""
            lines.append(f"{icon} {escape(a.name)} on {escape(a.labels.get('target', '-'))}"
                         f" ({phase}{since}){mute}")
        if len(current) > 40:
            lines.append(f"… and {len(current) - 40} more")
        return "\n".join(lines)

    async def silence(self, args: Sequence[str], who: str) -> str:
        if len(args) < 2:
            return "Usage: /silence &lt;target or alertname&gt; &lt;duration&gt; [reason]"
        rules = [r.name for r in self.alerting.evaluator.rules]
        alertnames = rules + [a.name for a, _, _ in self.alerting.current()]
        try:
            silence = silence_for(args[0], self._targets, alertnames, args[1],
                                  " ".join(args[2:]), who, self._clock())
        except SilenceError as exc:
            return f"⚠️ {escape(str(exc))}"
        await self.alerting.add_silence(silence)
        (key, value), = silence.matchers.items()
        return (f"🔕 Silenced {escape(key)}={escape(value)} until {utc(silence.ends_at)}"
                f" (id <code>{escape(silence.id)}</code>)")

    async def unsilence(self, args: Sequence[str]) -> str:
        if len(args) != 1:
            return "Usage: /unsilence &lt;silence id, target or alertname&gt;"
        name, now = args[0], self._clock()
        ids = [s.id for s in self.alerting.silences.active(now)
               if s.id == name or name in s.matchers.values()]
        for sid in ids:
            await self.alerting.expire_silence(sid)
        if not ids:
            return f"No active silence matches {escape(name)}."
        return f"🔔 Ended {len(ids)} silence(s): " + ", ".join(f"<code>{i}</code>" for i in ids)

    # --- buttons ---------------------------------------------------------------------------
    async def _button(self, press: Callback) -> None:
        parsed = parse_callback(press.data)
        alert = self._find(parsed[1]) if parsed else None
        if parsed is None or alert is None:
            await self.sender.answer_callback(press.callback_id, "That alert is not firing now")
            return
        action = parsed[0]
        sent = await asyncio.to_thread(self.alerting.store.message_of, press.chat_id,
                                       press.message_id)
        text = sent["text"] if sent else ""
        now = self._clock()
        if action == SILENCE_1H:
            matchers = {k: alert.labels[k] for k in ("alertname", "target")
                        if k in alert.labels}
            await self.alerting.add_silence(Silence(
                silence_id(matchers, press.user, now), matchers, now, now + timedelta(hours=1),
                "from the Silence 1h button", press.user))
            await self.sender.answer_callback(press.callback_id, "Silenced for 1 hour")
            note = f"🔕 Silenced for 1h by {escape(press.user)}"
        elif action == ACK:  # recorded (who, when): /api/v1/alerts of every instance shows it
            await self.alerting.acknowledge(alert.fingerprint, press.user)
            await self.sender.answer_callback(press.callback_id, "Acknowledged")
            note = f"👀 Acknowledged by {escape(press.user)} at {utc(now)}"
        else:
            return
        if text:
            try:
                await self.sender.edit(press.chat_id, press.message_id, f"{text}\n\n{note}")
            except NotifyError as exc:  # the press itself worked; the mark is cosmetic
                log.info("bot %s: could not mark message %d: %s", self.name,
                         press.message_id, exc)

    def _find(self, fingerprint: str) -> Alert | None:
        return next((a for a, _, _ in self.alerting.current()
                     if a.fingerprint == fingerprint), None)

