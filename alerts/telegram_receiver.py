"""One `[[alerts.receivers]]` entry of type telegram, as the `Receiver` that `Alerting` sends
through: notifications rendered by `telegram_format`, sent by a `TelegramSender` that is
started on first use, so that Telegram being down at start-up delays, never stops, alerting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from alerts.model import Notification
from alerts.telegram import TelegramSender
from alerts.telegram_format import Message, format_notification
from core.clock import Clock, utc_now


class TelegramReceiver:
    """Renders notifications and sends them; `ready()` starts the sender (NotifyError while
    Telegram cannot be reached), `close()` stops it if it was started."""

    def __init__(self, name: str, sender: TelegramSender, clock: Clock = utc_now) -> None:
        self._name, self.sender = name, sender
        self._clock = clock
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
        message = format_notification(note, self._clock())
        return message.text, message.buttons

    async def send(self, text: str, buttons: Sequence[tuple[str, str]]) -> tuple[str, int]:
        await self.ready()
        sent = await self.sender.send(Message(text, tuple((a, b) for a, b in buttons)))
        return sent.chat_id, sent.message_id

    async def close(self) -> None:
        if self._started:
            await self.sender.close()
