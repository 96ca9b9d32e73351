"""API request bodies parsed into typed values, once, at the edge.

Each parser raises `BadRequest(status, message, field)`; the API turns it into the JSON
error `{"error", "field"}`. Nothing deeper re-checks what passed here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from service.models import NewEvent

MAX_EVENT_BYTES = 256 * 1024
MAX_BATCH = 1000
_TYPE = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")


class BadRequest(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(400, f"body is not valid JSON: {exc}") from None


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
    return NewEvent(kind, None, key, text)  # the store keeps the text as it came


def event(raw: bytes) -> NewEvent:
    """One event from a request body."""
    try:
        return _new_event(_ONE.decode(raw), "")
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(400, f"body is not valid JSON: {exc}") from None


def batch(raw: bytes) -> list[NewEvent]:
    """A list of 1 to MAX_BATCH events from a request body; fields are named `[i].field`."""
    try:
        items = _MANY.decode(raw)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None
    except msgspec.DecodeError as exc:
        raise BadRequest(400, f"body is not valid JSON: {exc}") from None
    if not items:
        raise BadRequest(422, "must hold at least one event", None)
    if len(items) > MAX_BATCH:
        raise BadRequest(413, f"holds {len(items)} events; at most {MAX_BATCH}", None)
    return [_new_event(item, f"[{i}]") for i, item in enumerate(items)]


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
        try:
            check_url(url)
        except ValueError as exc:
            raise BadRequest(422, str(exc), "url") from None
    types = body.get("event_types")
    if types is not None and (not isinstance(types, list)
                              or not all(isinstance(t, str) and _TYPE.fullmatch(t)
                                         for t in types)):
        raise BadRequest(422, "must be a list of event type names", "event_types")
    secret = body.get("secret")
    if secret is not None:
        if not isinstance(secret, str):
            raise BadRequest(422, 'must be a "whsec_..." string', "secret")
        try:
            check_secret(secret)
        except ValueError as exc:  # the message never contains the secret itself
            raise BadRequest(422, str(exc), "secret") from None
    rate = body.get("rate_limit")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                             or rate <= 0):
        raise BadRequest(422, "must be a number of deliveries per second above 0, or null",
                         "rate_limit")
    description = body.get("description")
    if description is not None and (not isinstance(description, str)
                                    or len(description) > 1000):
        raise BadRequest(422, "must be a string of at most 1000 characters", "description")
    disabled = body.get("disabled")
    if disabled is not None and not isinstance(disabled, bool):
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
