"""One `[[alerts.receivers]]` entry of type telegram, as the `Receiver` that `Alerting` sends
through: notifications rendered by `telegram_format`, sent by a `TelegramSender` that is
started on first use, so that Telegram being down at start-up delays, never stops, alerting.
"""

from __future__ import annotations

import asyncio

from alerts.model import Notification
from alerts.store import Queued
from alerts.telegram import TelegramSender
from alerts.telegram_format import Message, TargetURL, format_notification
from core.clock import Clock, utc_now


class TelegramReceiver:
    """Renders notifications and sends them; `ready()` starts the sender (NotifyError while
    Telegram cannot be reached), `close()` stops it if it was started."""

    def __init__(self, name: str, sender: TelegramSender, clock: Clock = utc_now,
                 target_url: TargetURL | None = None) -> None:
        """`target_url`: a target's URL as it may be shown, for the messages."""
        self._name, self.sender = name, sender
        self._clock = clock
        self._target_url = target_url
        self._started = False
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return self._name

    async def ready(self) -> None:
        async with self._lock:
            if not self._started:
                await self.sender.start()  # NotifyError when Telegram cannot be reached
                self._started = True

    def render(self, note: Notification) -> tuple[str, tuple[tuple[str, str], ...]]:
        message = format_notification(note, self._clock(), self._target_url)
        return message.text, message.buttons

    async def send(self, item: Queued) -> tuple[str, int]:
        """Sends a new message, never an edit: a RESOLVED replies to its group's last
        FIRING when that went to the chat alerts go to now."""
        await self.ready()
        reply_to = None
        if item.reply_to is not None and item.reply_to[0] == self.sender.chat_id:
            reply_to = item.reply_to[1]
        sent = await self.sender.send(Message(item.text, tuple((a, b) for a, b in item.buttons)),
                                      reply_to=reply_to)
        return sent.chat_id, sent.message_id

    async def close(self) -> None:
        if self._started:
            await self.sender.close()
