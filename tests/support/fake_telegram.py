"""A fake Telegram Bot API on a real local aiohttp server, following the Bot API documentation:
`/bot<token>/<method>` (methods case-insensitive), JSON, form or multipart parameters, answers
`{"ok": true, "result": ...}` or `{"ok": false, "error_code": N, "description": ...}` with
optional `parameters` (retry_after, migrate_to_chat_id).

It checks HTML parse mode the way Telegram does (allowed tags only, balanced, valid entities,
at most 4096 UTF-16 units of text after parsing), long-polls getUpdates, records what it
accepted, and lets a test inject updates and script failures. A getUpdates arriving while
another is open ends the open one with 409 "Conflict: terminated by other getUpdates
request" as the Bot API does (counted in `conflicts`), so two bots polling one token show:

    fake.fail("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
    fake.migrate_chat("-100", "-1009")     # every later sendMessage to -100 gets the 400 answer
    fake.add_command("-100", "/status")    # an update for the next getUpdates
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest_asyncio
from aiohttp import web

from tests.support.web import serve

MAX_TEXT = 4096
BOT_ID = 7012345678
JSON = dict[str, Any]


class ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: JSON | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


@dataclass(frozen=True)
class Sent:
    """One message the fake accepted (sendMessage)."""

    chat_id: str
    text: str
    parse_mode: str | None
    message_thread_id: int | None
    reply_markup: JSON | None
    message_id: int
    reply_to: int | None = None  # reply_parameters.message_id, when it was a reply


@dataclass(frozen=True)
class Forced:
    """A scripted answer for the next call of `method`."""

    method: str
    status: int
    description: str
    parameters: JSON | None = None
    delay: float = 0.0  # seconds before answering (for client timeouts)


class FakeTelegram:
    """The fake's state; `serve_fake_telegram()` puts it behind a server and sets `url`."""

    def __init__(self) -> None:
        self.url = ""  # what the sender takes as api_url: http://127.0.0.1:PORT
        self.answer_delay = 0.0  # seconds between taking a message and answering for it
        self.token = f"{BOT_ID}:AA{secrets.token_urlsafe(24)}"
        self.sent: list[Sent] = []
        self.edits: list[JSON] = []  # chat_id, message_id, text, reply_markup
        self.answered: list[JSON] = []  # callback_query_id, text, show_alert
        self.calls: list[tuple[str, JSON]] = []  # every authorized request: method, params
        self.forced: list[Forced] = []
        self.migrated: dict[str, str] = {}
        self.kicked: set[str] = set()
        self.messages: dict[tuple[str, int], JSON] = {}  # the bot's, by (chat_id, message_id)
        self.updates: list[JSON] = []  # not yet confirmed by a getUpdates offset
        self.callback_ids: set[str] = set()  # callback queries not answered yet
        self._next_update = 500_000_001
        self._next_message = 1
        self._poll_generation = 0
        self.conflicts = 0  # long polls cut off by a concurrent getUpdates (two bots polling)
        self._arrived = asyncio.Event()

    # ---- scripting ----

    def fail(self, method: str, status: int, description: str, *, retry_after: int | None = None,
             migrate_to_chat_id: int | None = None, delay: float = 0.0) -> None:
        params: JSON = {}
        if retry_after is not None:
            params["retry_after"] = retry_after
        if migrate_to_chat_id is not None:
            params["migrate_to_chat_id"] = migrate_to_chat_id
        self.forced.append(Forced(method.lower(), status, description, params or None, delay))

    def migrate_chat(self, old: str, new: str) -> None:
        """The group `old` became the supergroup `new`: sends to `old` are refused from now."""
        self.migrated[old] = new

    def kick(self, chat_id: str) -> None:
        self.kicked.add(chat_id)

    def add_command(self, chat_id: str, text: str, *, user_id: int = 42,
                    username: str | None = "alice") -> int:
        self._next_message += 1
        message = {
            "message_id": self._next_message, "date": int(time.time()),
            "chat": _chat(chat_id), "from": _user(user_id, username), "text": text,
        }
        if text.startswith("/"):
            length = len(text.split()[0].encode("utf-16-le")) // 2
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return self._add_update({"message": message})

    def add_callback(self, sent: Sent, data: str, *, user_id: int = 42,
                     username: str | None = "alice") -> str:
        """A press of an inline button of message `sent`; returns the callback query id."""
        query_id = str(secrets.randbits(63))
        self.callback_ids.add(query_id)
        self._add_update({"callback_query": {
            "id": query_id, "from": _user(user_id, username), "chat_instance": "-8123",
            "message": self.messages[(sent.chat_id, sent.message_id)], "data": data,
        }})
        return query_id

    def _add_update(self, body: JSON) -> int:
        update_id = self._next_update
        self._next_update += 1
        self.updates.append({"update_id": update_id, **body})
        self._arrived.set()
        return update_id

    # ---- the API ----

    async def handle(self, request: web.Request) -> web.Response:
        match = re.fullmatch(r"/bot([^/]*)/([A-Za-z]+)", request.path)
        if not match:
            return _error(ApiError(404, "Not Found"))
        if match.group(1) != self.token:
            return _error(ApiError(401, "Unauthorized"))
        method = match.group(2).lower()
        params = await _params(request)
        self.calls.append((method, params))
        try:
            forced = next((f for f in self.forced if f.method == method), None)
            if forced is not None:
                self.forced.remove(forced)
                await asyncio.sleep(forced.delay)
                raise ApiError(forced.status, forced.description, forced.parameters)
            handler = self._methods().get(method)
            if handler is None:
                raise ApiError(404, "Not Found")
            if method == "getupdates":
                result = await self._get_updates(params, request)
            else:
                result = await handler(params)
        except ApiError as exc:
            return _error(exc)
        return web.json_response({"ok": True, "result": result})

    def _methods(self) -> dict[str, Callable[[JSON], Awaitable[Any]]]:
        return {"getme": self._get_me, "sendmessage": self._send_message,
                "editmessagetext": self._edit_message_text, "getupdates": self._get_updates,
                "answercallbackquery": self._answer_callback_query}

    async def _get_me(self, _: JSON) -> JSON:
        return {**_user(BOT_ID, "crypitor_test_bot", is_bot=True), "can_join_groups": True,
                "can_read_all_group_messages": False, "supports_inline_queries": False}

    async def _send_message(self, p: JSON) -> JSON:
        chat_id = _required(p, "chat_id")
        self._check_chat(chat_id)
        text = _required(p, "text")
        parse_mode = p.get("parse_mode")
        _check_text(text, parse_mode)
        thread = _int(p["message_thread_id"]) if p.get("message_thread_id") else None
        markup = _markup(p.get("reply_markup"))
        reply_to = self._reply_to(chat_id, p.get("reply_parameters"))
        message_id = self._next_message = self._next_message + 1
        message: JSON = {"message_id": message_id, "date": int(time.time()),
                         "chat": _chat(chat_id), "from": _user(BOT_ID, "crypitor_test_bot",
                                                               is_bot=True),
                         "text": _visible(text) if parse_mode else text}
        if thread is not None:
            message |= {"message_thread_id": thread, "is_topic_message": True}
        if markup is not None:
            message["reply_markup"] = markup
        if reply_to is not None and (chat_id, reply_to) in self.messages:
            message["reply_to_message"] = self.messages[(chat_id, reply_to)]
        self.messages[(chat_id, message_id)] = message
        self.sent.append(Sent(chat_id, text, parse_mode, thread, markup, message_id, reply_to))
        await asyncio.sleep(self.answer_delay)  # taken, the answer still on its way
        return message

    def _reply_to(self, chat_id: str, raw: Any) -> int | None:
        """ReplyParameters as the Bot API reads them: a JSON object with message_id; a
        message not in the chat is refused unless allow_sending_without_reply."""
        if raw is None:
            return None
        params = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(params, dict) or "message_id" not in params:
            raise ApiError(400, "Bad Request: can't parse reply parameters JSON object")
        message_id = _int(params["message_id"])
        if (chat_id, message_id) not in self.messages \
                and not _bool(params.get("allow_sending_without_reply")):
            raise ApiError(400, "Bad Request: message to be replied not found")
        return message_id

    async def _edit_message_text(self, p: JSON) -> JSON:
        chat_id, message_id = _required(p, "chat_id"), _int(_required(p, "message_id"))
        self._check_chat(chat_id)
        text = _required(p, "text")
        parse_mode = p.get("parse_mode")
        _check_text(text, parse_mode)
        message = self.messages.get((chat_id, message_id))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        markup = _markup(p.get("reply_markup"))
        new_text = _visible(text) if parse_mode else text
        if new_text == message["text"] and markup == message.get("reply_markup"):
            raise ApiError(400, "Bad Request: message is not modified: specified new message "
                                "content and reply markup are exactly the same as a current "
                                "content and reply markup of the message")
        message = {k: v for k, v in message.items() if k != "reply_markup"}
        message |= {"text": new_text, "edit_date": int(time.time())}
        if markup is not None:
            message["reply_markup"] = markup
        self.messages[(chat_id, message_id)] = message
        self.edits.append({"chat_id": chat_id, "message_id": message_id, "text": text,
                           "reply_markup": markup})
        return message

    async def _answer_callback_query(self, p: JSON) -> bool:
        query_id = _required(p, "callback_query_id")
        if query_id not in self.callback_ids:
            raise ApiError(400, "Bad Request: query is too old and response timeout expired "
                                "or query ID is invalid")
        text = p.get("text") or ""
        if len(text) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self.callback_ids.discard(query_id)
        self.answered.append({"callback_query_id": query_id, "text": text,
                              "show_alert": _bool(p.get("show_alert"))})
        return True

    async def _get_updates(self, p: JSON, request: web.Request | None = None) -> list[JSON]:
        """A long poll; a newer one cuts it off with 409. Only a cut-off poll whose client is
        still there counts in `conflicts`: a killed process's abandoned poll is no conflict."""
        offset = _int(p.get("offset") or 0)
        limit = min(max(_int(p.get("limit") or 100), 1), 100)
        timeout = float(p.get("timeout") or 0)
        if offset:  # an offset confirms every earlier update
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        self._poll_generation += 1
        generation = self._poll_generation
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.updates:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 0.05))
            if generation != self._poll_generation:
                transport = request.transport if request is not None else None
                if request is None or (transport is not None and not transport.is_closing()):
                    self.conflicts += 1
                raise ApiError(409, "Conflict: terminated by other getUpdates request; make "
                                    "sure that only one bot instance is running")
        return self.updates[:limit]

    def _check_chat(self, chat_id: str) -> None:
        _chat(chat_id)
        if chat_id in self.migrated:
            raise ApiError(400, "Bad Request: group chat was upgraded to a supergroup chat",
                           {"migrate_to_chat_id": int(self.migrated[chat_id])})
        if chat_id in self.kicked:
            raise ApiError(403, "Forbidden: bot was kicked from the group chat")


# ---- request parsing and answers ----

async def _params(request: web.Request) -> JSON:
    params: JSON = dict(request.query)
    if request.content_type == "application/json":
        body = await request.json()
        params.update(body if isinstance(body, dict) else {})
    elif request.can_read_body:
        params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    # form values are strings: ids as digits, objects as JSON text
    for key in ("chat_id", "callback_query_id"):
        if key in params:
            params[key] = str(params[key])
    return params


def _required(p: JSON, key: str) -> str:
    value = p.get(key)
    if value in (None, ""):
        raise ApiError(400, f"Bad Request: {key} is empty" if key != "text"
                       else "Bad Request: message text is empty")
    return str(value)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"Bad Request: invalid integer {value!r}") from None


def _bool(value: Any) -> bool:
    return value in (True, "true", "True", "1", 1)


def _markup(value: Any) -> JSON | None:
    if value in (None, ""):
        return None
    markup = json.loads(value) if isinstance(value, str) else value
    if not isinstance(markup, dict):
        raise ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    for row in markup.get("inline_keyboard", []):
        for button in row:
            data = button.get("callback_data")
            if data is not None and not 1 <= len(data.encode()) <= 64:
                raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
    return markup


def _error(exc: ApiError) -> web.Response:
    body: JSON = {"ok": False, "error_code": exc.code, "description": exc.description}
    if exc.parameters:
        body["parameters"] = exc.parameters
    return web.json_response(body, status=exc.code)


def _chat(chat_id: str) -> JSON:
    if chat_id.startswith("@"):
        return {"id": -1001000000001, "type": "channel", "title": "Alerts",
                "username": chat_id[1:]}
    if not re.fullmatch(r"-?[0-9]{1,16}", chat_id):
        raise ApiError(400, "Bad Request: chat not found")
    if chat_id.startswith("-100"):
        return {"id": int(chat_id), "type": "supergroup", "title": "On-call"}
    if chat_id.startswith("-"):
        return {"id": int(chat_id), "type": "group", "title": "On-call"}
    return {"id": int(chat_id), "type": "private", "first_name": "Alice"}


def _user(user_id: int, username: str | None, *, is_bot: bool = False) -> JSON:
    user: JSON = {"id": user_id, "is_bot": is_bot, "first_name": username or "User"}
    if username:
        user["username"] = username
    return user


# ---- HTML parse mode, as https://core.telegram.org/bots/api#html-style describes it ----

_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre",
         "span", "tg-spoiler", "tg-emoji", "blockquote"}
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^<>]*)?)\s*>")
_ENTITY = re.compile(r"&(?:(lt|gt|amp|quot)|#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6}));")


def _check_text(text: str, parse_mode: str | None) -> None:
    visible = _visible(text) if parse_mode and parse_mode.lower() == "html" else text
    if not visible.strip():
        raise ApiError(400, "Bad Request: message text is empty")
    if len(visible.encode("utf-16-le")) // 2 > MAX_TEXT:
        raise ApiError(400, "Bad Request: message is too long")


def parse_html(text: str) -> str:
    """The text Telegram shows for `text` in HTML mode; ApiError 400 when it does not parse."""
    return _visible(text)


def _visible(text: str) -> str:
    out: list[str] = []
    stack: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "<":
            tag = _TAG.match(text, i)
            if tag is None:
                _bad(f"Unclosed start tag at byte offset {_offset(text, i)}")
            assert tag is not None
            closing, name, attrs = tag.group(1) == "/", tag.group(2).lower(), tag.group(3)
            if closing:
                if not stack:
                    _bad(f"Unexpected end tag at byte offset {_offset(text, i)}")
                if stack[-1] != name:
                    _bad(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
                stack.pop()
            else:
                _check_start(name, attrs, stack, _offset(text, i))
                stack.append(name)
            i = tag.end()
        elif ch == "&":
            entity = _ENTITY.match(text, i)
            if entity is None:
                _bad(f"Character '&' at byte offset {_offset(text, i)} does not start an "
                     "HTML entity; use &amp;")
            assert entity is not None
            named, dec, hexa = entity.groups()
            code = int(dec) if dec else int(hexa, 16) if hexa else None
            if code is not None and not 0 < code <= 0x10FFFF:
                _bad(f"Unsupported HTML entity at byte offset {_offset(text, i)}")
            out.append(_NAMED[named] if named else chr(code or 0))
            i = entity.end()
        elif ch == ">":
            _bad(f"Unexpected '>' at byte offset {_offset(text, i)}; use &gt;")
        else:
            out.append(ch)
            i += 1
    if stack:
        _bad(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return "".join(out)


def _check_start(name: str, attrs: str, stack: list[str], offset: int) -> None:
    if name not in _TAGS:
        _bad(f'Unsupported start tag "{name}" at byte offset {offset}')
    if name == "span" and not re.search(r"""class\s*=\s*["']?tg-spoiler""", attrs):
        _bad(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
    if name == "a" and "href" not in attrs:
        _bad(f'Tag "a" must have attribute "href" at byte offset {offset}')
    # pre and code hold plain text (only <pre><code class="language-…">); quotes do not nest
    if stack and stack[-1] in ("code", "pre") and not (name == "code" and stack[-1] == "pre"):
        _bad(f'Tag "{name}" can\'t be inside "{stack[-1]}" at byte offset {offset}')
    if name == "blockquote" and "blockquote" in stack:
        _bad(f'Tag "blockquote" can\'t be nested at byte offset {offset}')


def _offset(text: str, i: int) -> int:
    return len(text[:i].encode())


def _bad(reason: str) -> None:
    raise ApiError(400, f"Bad Request: can't parse entities: {reason}")


# ---- the server and its fixture ----

@contextlib.asynccontextmanager
async def serve_fake_telegram() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    # no access log: request paths hold the token, and the tests look for it in the logs
    async with serve(app) as fake.url:  # serve() writes no access log
        yield fake


@pytest_asyncio.fixture
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    async with serve_fake_telegram() as fake:
        yield fake

