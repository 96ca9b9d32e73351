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


def _object(value: Any, where: str | None) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(422, "must be a JSON object", where)
    return value


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _unknown(body: Mapping[str, Any], allowed: set[str], prefix: str = "") -> None:
    for key in body:
        if key not in allowed:
            raise BadRequest(422, f"unknown field (allowed: {', '.join(sorted(allowed))})",
                             _join(prefix, key))


def event(value: Any, prefix: str = "") -> NewEvent:
    body = _object(value, prefix or None)
    _unknown(body, {"type", "data", "idempotency_key"}, prefix)
    kind = body.get("type")
    if kind is None:
        raise BadRequest(422, "is required", _join(prefix, "type"))
    if not isinstance(kind, str) or not _TYPE.fullmatch(kind):
        raise BadRequest(422, "must be 1-200 characters of letters, digits and . _ : -",
                         _join(prefix, "type"))
    if "data" not in body:
        raise BadRequest(422, "is required", _join(prefix, "data"))
    key = body.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not 0 < len(key) <= 256):
        raise BadRequest(422, "must be a string of 1-256 characters",
                         _join(prefix, "idempotency_key"))
    serialised = json.dumps(body["data"], separators=(",", ":"))
    if len(serialised) > MAX_EVENT_BYTES:
        raise BadRequest(413, f"is larger than {MAX_EVENT_BYTES // 1024} KB",
                         _join(prefix, "data"))
    return NewEvent(kind, body["data"], key, serialised)  # the store reuses the string


def batch(value: Any) -> list[NewEvent]:
    if not isinstance(value, list):
        raise BadRequest(422, "must be a JSON list of events", None)
    if not value:
        raise BadRequest(422, "must hold at least one event", None)
    if len(value) > MAX_BATCH:
        raise BadRequest(413, f"holds {len(value)} events; at most {MAX_BATCH}", None)
    return [event(item, f"[{i}]") for i, item in enumerate(value)]


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
    body = _object(value, None)
    allowed = {"url", "event_types", "secret", "rate_limit", "description"}
    _unknown(body, allowed if creating else allowed - {"secret"} | {"disabled"})
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
    body = _object(value if value is not None else {}, None)
    _unknown(body, {"since", "until"})
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
