"""API request bodies parsed into typed values, once, at the edge.

Each parser raises `BadRequest(status, message, field)`; the API turns it into the JSON
error `{"error", "field"}`. Nothing deeper re-checks what passed here.

The input limits of every body are decided here, once (the OpenAPI description and the
README state them): JSON nests at most MAX_DEPTH levels; a string outside event `data` holds
at most MAX_STRING characters and no lone surrogate; a number outside its field's range
(NaN, Infinity and 1e400 included) is refused naming the field. Event `data` is kept as
sent: at most MAX_EVENT_BYTES, numbers of any size, valid Unicode.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate, repeat
from typing import Any

import msgspec

from service.models import MAX_RATE_LIMIT, MIN_RATE_LIMIT, NewEvent

MAX_REQUEST = 16 * 1024 * 1024  # a full batch; each event is held to 256 KB on its own
MAX_EVENT_BYTES = 256 * 1024
# an endpoint or replay body: the largest an endpoint can be (1000 event types of 200
# characters, a url of 8192) fits many times, and the checks below stay cheap on the loop
MAX_SMALL_BODY = 1024 * 1024
MAX_BATCH = 1000
MAX_DEPTH = 64  # levels of arrays and objects: a body's, and an event's `data` on its own
MAX_STRING = 8192  # characters of any string (or key) of a body, outside event `data`
MAX_URL = 8192  # characters of an endpoint's url
MAX_EVENT_TYPES = 1000  # per endpoint
MAX_INT_DIGITS = 20  # past this an integer is read as a float: no field takes one that long
_TYPE = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")
_URL_BREAKERS = re.compile(r"[\x00-\x20\x7f]")  # spaces and control characters, CR LF too


class BadRequest(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        # a field named after a client's key: printable, whatever the key held
        if field is not None:
            field = field.encode("utf-8", "backslashreplace").decode()
        self.status, self.message, self.field = status, message, field


def _too_deep(field: str | None) -> BadRequest:
    return BadRequest(422, f"is nested deeper than {MAX_DEPTH} levels of arrays and objects",
                      field)


_SURROGATE = "is not valid Unicode: it holds a lone surrogate (\\ud800-\\udfff unpaired)"


def _number(text: str) -> int | float:
    # Python refuses int() past 4,300 digits with a ValueError that names no field
    return int(text) if len(text) <= MAX_INT_DIGITS else float(text)


def parse_json(raw: bytes, max_bytes: int = MAX_REQUEST) -> Any:
    """A request body as JSON, within the limits above (a body as sent is refused whole)."""
    if len(raw) > max_bytes:
        raise BadRequest(413, f"is larger than {max_bytes // 1024} KB", "body")
    try:
        value = json.loads(raw, parse_int=_number)
    except RecursionError:
        raise _too_deep(_locate(raw)) from None
    except ValueError as exc:
        raise BadRequest(400, f"body is not valid JSON: {exc}") from None
    _check(value, [], 0)
    return value


def _check_text(text: str, parts: list[str | int]) -> None:
    if len(text) > MAX_STRING:
        raise BadRequest(422, f"is longer than {MAX_STRING} characters", _path(parts))
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            raise BadRequest(400, _SURROGATE, _path(parts)) from None


def _check(value: Any, parts: list[str | int], depth: int) -> None:
    """Every string and key of `value` (a parsed body) within MAX_STRING and valid
    Unicode, its nesting within MAX_DEPTH."""
    if isinstance(value, str):
        _check_text(value, parts)
    elif isinstance(value, dict | list):
        if depth >= MAX_DEPTH:
            raise _too_deep(_path(parts, outermost=True))
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, [*parts, key])
                _check(item, [*parts, key], depth + 1)
        elif not all(type(item) is str and item.isascii() and len(item) <= MAX_STRING
                     for item in value):  # the common list: plain strings, checked at once
            for i, item in enumerate(value):
                _check(item, [*parts, i], depth + 1)


def _path(parts: list[str | int], outermost: bool = False) -> str | None:
    """`parts` as a field path (`a.b[2].c`); `outermost`: only down to the first key (what
    is below it is the client's own structure, such as an event's `data`)."""
    path = ""
    for part in parts:
        if isinstance(part, int):
            if outermost and path:
                break
            path += f"[{part}]"
            continue
        path = _join(path, part)
        if outermost:
            break
    return path or None


_TOKEN = re.compile(rb'"((?:[^"\\]|\\.)*)"(\s*:)?|[][{},]', re.S)


def _locate(raw: bytes, offset: int | None = None) -> str | None:
    """The outermost named field of the JSON text `raw` at byte `offset`, or (offset None)
    where it first nests deeper than MAX_DEPTH. For error answers only: it is slow."""
    parts: list[str | int] = []
    for m in _TOKEN.finditer(raw):
        if offset is not None and m.start() >= offset:
            break
        token = m[0]
        if m[2]:  # a key
            if parts:
                try:
                    parts[-1] = json.loads(b'"' + m[1] + b'"')
                except ValueError:
                    parts[-1] = m[1].decode("utf-8", "replace")
        elif token in (b"[", b"{"):
            parts.append(0)  # an object's part becomes its key once one is read
            if offset is None and len(parts) > MAX_DEPTH:
                break
        elif token in (b"]", b"}"):
            if parts:
                parts.pop()
        elif token == b"," and parts and isinstance(parts[-1], int):
            parts[-1] += 1
    return _path(parts, outermost=True)


_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = re.compile(r"[^][{}]+")
_STEPS = str.maketrans("[{]}", "\x01\x01\xff\xff")  # +1 and -1 as signed bytes


def _depth(text: str) -> int:
    """How deep the JSON text `text` nests, in one linear pass: events are checked on the
    ingest hot path, and one whose brackets could not reach MAX_DEPTH skips even this (the
    caller counts them first)."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    steps = memoryview(brackets.translate(_STEPS).encode("latin-1")).cast("b")
    return max(accumulate(steps), default=0)


def json_object(value: Any, where: str | None) -> Mapping[str, Any]:
    """`value` when it is a JSON object; else BadRequest (422) naming the field `where`."""
    if not isinstance(value, dict):
        raise BadRequest(422, "must be a JSON object", where)
    return value


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def reject_unknown(body: Mapping[str, Any], allowed: set[str], prefix: str = "") -> None:
    """BadRequest (422) naming the first key of `body` (under `prefix`) not in `allowed`."""
    for key in body:
        if key not in allowed:
            raise BadRequest(422, f"unknown field (allowed: {', '.join(sorted(allowed))})",
                             _join(prefix, key))


# --- events: the ingest hot path ---------------------------------------------------------
# msgspec checks the shape in C and keeps `data` as the exact bytes the client sent: no
# re-serialising, and numbers beyond 64 bits (token amounts in wei) stay exact.
class _Event(msgspec.Struct, forbid_unknown_fields=True):
    type: str
    data: msgspec.Raw
    idempotency_key: str | None = None


_ONE = msgspec.json.Decoder(_Event)
_MANY = msgspec.json.Decoder(list[_Event])
_EVENT_FIELDS = "data, idempotency_key, type"
_AT = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"Object missing required field `(?P<key>[^`]+)`")
_EXTRA = re.compile(r"Object contains unknown field `(?P<key>[^`]+)`")
_KINDS = {"str": "a string", "str | null": "a string or null", "object": "a JSON object",
          "array": "a JSON list of events"}
_EXPECTED = re.compile(r"Expected `(?P<want>[^`]+)`, got `(?P<got>[^`]+)`")
_known_types: set[str] = set()  # type names already checked: most events repeat a few


def _invalid(exc: msgspec.ValidationError) -> BadRequest:
    text = str(exc)
    at = _AT.search(text)
    path = at["path"] if at else ""
    text = text[:at.start()] if at else text
    if m := _MISSING.match(text):
        return BadRequest(422, "is required", _join(path, m["key"]))
    if m := _EXTRA.match(text):
        return BadRequest(422, f"unknown field (allowed: {_EVENT_FIELDS})",
                          _join(path, m["key"]))
    if m := _EXPECTED.match(text):
        text = f"must be {_KINDS.get(m['want'], m['want'])}, not {m['got']}"
    return BadRequest(422, text, path or None)


def _new_event(ev: _Event, prefix: str) -> NewEvent:
    kind = ev.type
    if kind not in _known_types:
        if not _TYPE.fullmatch(kind):
            raise BadRequest(422, "must be 1-200 characters of letters, digits and . _ : -",
                             _join(prefix, "type"))
        if len(_known_types) < 10_000:
            _known_types.add(kind)
    key = ev.idempotency_key
    if key is not None and not 0 < len(key) <= 256:
        raise BadRequest(422, "must be a string of 1-256 characters",
                         _join(prefix, "idempotency_key"))
    raw = ev.data
    if len(raw) > MAX_EVENT_BYTES:
        raise BadRequest(413, f"is larger than {MAX_EVENT_BYTES // 1024} KB",
                         _join(prefix, "data"))
    try:
        text = str(raw, "utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, "is not valid UTF-8", _join(prefix, "data")) from None
    # inline, not in _depth: this line runs for every event of every batch
    if text.count("[") + text.count("{") > MAX_DEPTH and _depth(text) > MAX_DEPTH:
        raise _too_deep(_join(prefix, "data"))
    return NewEvent(kind, None, key, text)  # the store keeps the text as it came


_AT_BYTE = re.compile(r"surrogate.*\(byte (?P<at>[0-9]+)\)")


def _decode(decoder: msgspec.json.Decoder[Any], raw: bytes) -> Any:
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    except msgspec.DecodeError as exc:
        if m := _AT_BYTE.search(str(exc)):  # msgspec checks surrogates in `data` too
            raise BadRequest(400, _SURROGATE, _locate(raw, int(m["at"]))) from None
        raise BadRequest(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:  # msgspec's own limit, far past MAX_DEPTH
        raise _too_deep(_locate(raw)) from None


def event(raw: bytes) -> NewEvent:
    """One event from a request body."""
    return _new_event(_decode(_ONE, raw), "")


def batch(raw: bytes) -> list[NewEvent]:
    """A list of 1 to MAX_BATCH events from a request body; fields are named `[i].field`."""
    items = _decode(_MANY, raw)
    if not items:
        raise BadRequest(422, "must hold at least one event", None)
    if len(items) > MAX_BATCH:
        raise BadRequest(413, f"holds {len(items)} events; at most {MAX_BATCH}", None)
    return _plain_batch(items) or [_new_event(item, f"[{i}]") for i, item in enumerate(items)]


def _plain_batch(items: list[_Event]) -> list[NewEvent] | None:
    """`_new_event` of every item, a check at a time over the whole batch instead of every
    check per event (a third of the parsing time of a 100-event batch); None when any
    event is not plain (a type not seen before, an idempotency key, data too large, not
    UTF-8 or deeply nested): the caller then checks event by event, naming the field."""
    kinds = [item.type for item in items]
    if not _known_types.issuperset(kinds) or any(
            item.idempotency_key is not None for item in items):
        return None
    datas = [item.data for item in items]
    if max(map(len, datas)) > MAX_EVENT_BYTES:
        return None
    try:
        texts = [str(raw, "utf-8") for raw in datas]
    except UnicodeDecodeError:
        return None
    if any(text.count("[") + text.count("{") > MAX_DEPTH for text in texts):
        return None
    return list(map(NewEvent, kinds, repeat(None), repeat(None), texts))


@dataclass(frozen=True)
class EndpointFields:
    """The fields a POST or PATCH set; None means "not given"."""

    url: str | None = None
    event_types: tuple[str, ...] | None = None
    secret: str | None = None
    rate_limit: float | None = None
    rate_limit_given: bool = False
    description: str | None = None
    disabled: bool | None = None


def endpoint_fields(value: Any, creating: bool, check_url: Callable[[str], None],
                    check_secret: Callable[[str], object]) -> EndpointFields:
    body = json_object(value, None)
    allowed = {"url", "event_types", "secret", "rate_limit", "description"}
    reject_unknown(body, allowed if creating else allowed - {"secret"} | {"disabled"})
    url = body.get("url")
    if url is None and creating:
        raise BadRequest(422, "is required", "url")
    if url is not None:
        if not isinstance(url, str):
            raise BadRequest(422, "must be a string", "url")
        if len(url) > MAX_URL:
            raise BadRequest(422, f"is longer than {MAX_URL} characters", "url")
        if _URL_BREAKERS.search(url):  # sent as given, dialled as something else
            raise BadRequest(422, "must not contain spaces or control characters (CR, LF, "
                                  "tab ...): percent-encode them", "url")
        try:
            check_url(url)
        except ValueError as exc:
            raise BadRequest(422, str(exc), "url") from None
    types = body.get("event_types")
    if types is not None:
        if not isinstance(types, list) or len(types) > MAX_EVENT_TYPES:
            raise BadRequest(422, f"must be a list of at most {MAX_EVENT_TYPES} event type "
                                  "names", "event_types")
        for i, kind in enumerate(types):
            if not isinstance(kind, str) or not _TYPE.fullmatch(kind):
                raise BadRequest(422, "must be an event type name: 1-200 characters of "
                                      "letters, digits and . _ : -", f"event_types[{i}]")
    secret = body.get("secret")
    if secret is not None:
        if not isinstance(secret, str):
            raise BadRequest(422, 'must be a "whsec_..." string', "secret")
        try:
            check_secret(secret)
        except ValueError as exc:  # the message never contains the secret itself
            raise BadRequest(422, str(exc), "secret") from None
    rate = body.get("rate_limit")
    # NaN fails both comparisons; Infinity, 1e400 and 10**400 the upper one
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                             or not MIN_RATE_LIMIT <= rate <= MAX_RATE_LIMIT):
        raise BadRequest(422, f"must be a number of deliveries per second from "
                              f"{MIN_RATE_LIMIT:g} to {MAX_RATE_LIMIT:g}, or null (unlimited)",
                         "rate_limit")
    description = body.get("description")
    if description is not None and (not isinstance(description, str)
                                    or len(description) > 1000):
        raise BadRequest(422, "must be a string of at most 1000 characters", "description")
    disabled = body.get("disabled")
    if "disabled" in body and not isinstance(disabled, bool):
        raise BadRequest(422, "must be true or false", "disabled")
    return EndpointFields(url, tuple(types) if types is not None else None, secret,
                          float(rate) if rate is not None else None, "rate_limit" in body,
                          description, disabled)


def time_window(value: Any) -> tuple[datetime | None, datetime | None]:
    body = json_object(value if value is not None else {}, None)
    reject_unknown(body, {"since", "until"})
    out: list[datetime | None] = []
    for key in ("since", "until"):
        raw = body.get(key)
        if raw is None:
            out.append(None)
            continue
        try:
            when = datetime.fromisoformat(raw) if isinstance(raw, str) else None
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            raise BadRequest(422, 'must be an ISO 8601 time with a zone, like '
                             '"2026-11-26T12:00:00Z"', key)
        out.append(when)
    since, until = out
    if since and until and since > until:
        raise BadRequest(422, "must not be after until", "since")
    return since, until
