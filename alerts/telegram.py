"""The Telegram transport: sends formatted messages (a RESOLVED as a reply to its FIRING),
edits them, answers button presses and long-polls for bot commands, through
python-telegram-bot's `Bot` (httpx underneath).

Every failure is one `NotifyError`: `retry_after` is Telegram's flood wait, a short hint for
network trouble and 5xx answers, or None when retrying cannot help (bad request, bot kicked,
wrong token). The bot token sits in every request URL, so the sender keeps it out of logs
(httpx quietened, a redacting filter on the loggers that could see it) and out of the errors
it raises (their messages and causes are scrubbed), both with `alerts.telegram_errors`.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    ReplyParameters,
    Update,
    User,
)
from telegram import error as tg
from telegram.constants import ParseMode
from telegram.request import HTTPXRequest

from alerts import NotifyError
from alerts.telegram_errors import REDACTED, RETRY_HINT, TokenFilter, notify_error, redact
from alerts.telegram_format import Buttons, Message

# moved to alerts.telegram_errors; re-exported so `from alerts.telegram import ...` still works
__all__ = ["REDACTED", "RETRY_HINT", "Callback", "Command", "OnMigrate", "SentMessage",
           "TelegramSender", "TokenFilter", "redact"]

log = logging.getLogger(__name__)

# loggers that may see request URLs or ptb's own messages about the token
_WATCHED = ("telegram", "httpx", "httpcore", __name__)

OnMigrate = Callable[[str, str], Awaitable[None] | None]  # (old chat id, new chat id)


@dataclass(frozen=True)
class SentMessage:
    chat_id: str
    message_id: int


@dataclass(frozen=True)
class Command:
    """A message starting with "/" sent to the bot (e.g. "/status" or "/silence@bot 1h")."""

    update_id: int
    chat_id: str
    user: str  # "@username", or the numeric user id when there is none
    text: str


@dataclass(frozen=True)
class Callback:
    """A press of one of the bot's inline buttons; answer it with `answer_callback()`."""

    update_id: int
    callback_id: str
    chat_id: str
    message_id: int
    user: str
    data: str


class TelegramSender:
    def __init__(self, token: str, chat_id: str, *, message_thread_id: int = 0,
                 api_url: str = "https://api.telegram.org", timeout: float = 10.0,
                 on_migrate: OnMigrate | None = None) -> None:
        if not token:
            raise ValueError("a Telegram bot token is required")
        self._token, self._chat_id = token, str(chat_id)
        self._thread_id = message_thread_id or None
        self._api_url = api_url.rstrip("/")
        self._timeout = timeout
        self.on_migrate = on_migrate
        self._filter = TokenFilter(token)
        self._filtered: list[logging.Filterer] = []
        self._bot: Bot | None = None
        self._next_offset: int | None = None

    @property
    def chat_id(self) -> str:
        """The chat alerts go to; changes when Telegram reports the group became a supergroup."""
        return self._chat_id

    @property
    def next_offset(self) -> int | None:
        """The offset that confirms every update `updates()` has seen (ignored kinds too)."""
        return self._next_offset

    async def start(self) -> None:
        """Guards the logs, then checks the token with getMe."""
        self._guard_logs()
        if self._bot is None:
            t = self._timeout
            self._bot = Bot(
                self._token, base_url=f"{self._api_url}/bot",
                base_file_url=f"{self._api_url}/file/bot",
                request=HTTPXRequest(connection_pool_size=4, connect_timeout=t, read_timeout=t,
                                     write_timeout=t, pool_timeout=t),
                # getUpdates adds its long-poll timeout to this read timeout
                get_updates_request=HTTPXRequest(connection_pool_size=1, connect_timeout=t,
                                                 read_timeout=t, write_timeout=t,
                                                 pool_timeout=t),
            )
        try:
            await self._bot.initialize()
        except tg.TelegramError as exc:
            raise self._error("getMe", exc) from exc

    async def close(self) -> None:
        if self._bot is not None:
            bot, self._bot = self._bot, None
            await bot.shutdown()
        for filterer in self._filtered:
            filterer.removeFilter(self._filter)
        self._filtered.clear()

    async def send(self, message: Message, chat_id: str | None = None,
                   reply_to: int | None = None) -> SentMessage:
        """Sends to the alert chat (or, for a bot reply, to `chat_id`); when the alert chat
        migrates from group to supergroup, follows it and resends. `reply_to`: a message
        of that chat this one answers (a RESOLVED its FIRING); sent all the same when that
        message is gone, and never to a migrated chat, where the id means nothing."""
        bot = self._ready()
        for attempt in (1, 2):
            target = self._chat_id if chat_id is None else chat_id
            to_alert_chat = target == self._chat_id
            reply = None if reply_to is None else ReplyParameters(
                reply_to, allow_sending_without_reply=True)
            try:
                sent = await bot.send_message(
                    target, message.text,
                    parse_mode=ParseMode.HTML,
                    message_thread_id=self._thread_id if to_alert_chat else None,
                    reply_markup=_keyboard(message.buttons),
                    reply_parameters=reply,
                    link_preview_options=LinkPreviewOptions(is_disabled=True))
            except tg.ChatMigrated as exc:
                if attempt == 2 or not to_alert_chat:
                    raise self._error("sendMessage", exc) from exc
                await self._migrate(str(exc.new_chat_id))
                chat_id, reply_to = None, None
            except tg.TelegramError as exc:
                raise self._error("sendMessage", exc) from exc
            else:
                return SentMessage(str(sent.chat_id), sent.message_id)
        raise AssertionError("unreachable")  # pragma: no cover

    async def edit(self, chat_id: str, message_id: int, text: str, buttons: Buttons = ()) -> None:
        """Replaces a message's text (HTML) and buttons; an unchanged message is not an error."""
        try:
            await self._ready().edit_message_text(
                text, chat_id=chat_id, message_id=message_id, parse_mode=ParseMode.HTML,
                reply_markup=_keyboard(buttons),
                link_preview_options=LinkPreviewOptions(is_disabled=True))
        except tg.BadRequest as exc:
            if "message is not modified" not in str(exc).lower():
                raise self._error("editMessageText", exc) from exc
        except tg.ChatMigrated as exc:
            # the message stays in the old chat: nothing to edit there any more
            if str(chat_id) == self._chat_id:
                await self._migrate(str(exc.new_chat_id))
            raise self._error("editMessageText", exc) from exc
        except tg.TelegramError as exc:
            raise self._error("editMessageText", exc) from exc

    async def answer_callback(self, callback_id: str, text: str = "") -> None:
        """Stops the button's spinner; `text` shows as a short notice (at most 200 chars)."""
        try:
            await self._ready().answer_callback_query(callback_id, text=text[:200] or None)
        except tg.TelegramError as exc:
            raise self._error("answerCallbackQuery", exc) from exc

    async def updates(self, offset: int | None = None,
                      timeout: float = 25.0) -> list[Command | Callback]:
        """Long-polls for commands and button presses; `offset` None means `next_offset`."""
        try:
            raw = await self._ready().get_updates(
                offset=self._next_offset if offset is None else offset,
                timeout=int(timeout), allowed_updates=["message", "callback_query"])
        except tg.TelegramError as exc:
            raise self._error("getUpdates", exc) from exc
        out: list[Command | Callback] = []
        for update in raw:
            self._next_offset = max(self._next_offset or 0, update.update_id + 1)
            item = _convert(update)
            if item is not None:
                out.append(item)
        return out

    # ---- internals ----

    def _ready(self) -> Bot:
        if self._bot is None:
            raise RuntimeError("TelegramSender used before start()")
        return self._bot

    async def _migrate(self, new_chat_id: str) -> None:
        old, self._chat_id = self._chat_id, new_chat_id
        log.warning("telegram chat %s was upgraded to supergroup %s; sending there now",
                    old, new_chat_id)
        if self.on_migrate is None:
            return
        try:
            result = self.on_migrate(old, new_chat_id)
            if inspect.isawaitable(result):
                await result
        except Exception:  # persisting the new id must not lose the alert being sent
            log.exception("on_migrate(%s, %s) failed", old, new_chat_id)

    def _error(self, method: str, exc: tg.TelegramError) -> NotifyError:
        return notify_error(method, exc, self._token)

    def _guard_logs(self) -> None:
        for name in ("httpx", "httpcore"):
            logger = logging.getLogger(name)
            if logger.level < logging.WARNING:  # NOTSET included; a stricter level is kept
                logger.setLevel(logging.WARNING)
        # a logger's filters see only the records created on it, so each existing child
        # logger gets one; handlers of the root see whatever propagates from elsewhere
        names = [n for n in logging.root.manager.loggerDict
                 if any(n == w or n.startswith(w + ".") for w in _WATCHED)]
        targets: list[logging.Filterer] = [logging.getLogger(n) for n in {*names, *_WATCHED}]
        targets += logging.getLogger().handlers
        for target in targets:
            if self._filter not in target.filters:
                target.addFilter(self._filter)
                self._filtered.append(target)


def _keyboard(buttons: Buttons) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    return InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=data)
                                  for label, data in buttons]])


def _convert(update: Update) -> Command | Callback | None:
    query = update.callback_query
    if query is not None:
        if query.message is None:  # inline-mode messages: we never send any
            return None
        return Callback(update.update_id, query.id, str(query.message.chat.id),
                        query.message.message_id, _who(query.from_user), query.data or "")
    message = update.message
    if message is not None and message.text and message.text.startswith("/"):
        return Command(update.update_id, str(message.chat.id), _who(message.from_user),
                       message.text)
    return None


def _who(user: User | None) -> str:
    if user is None:
        return ""
    return f"@{user.username}" if user.username else str(user.id)

