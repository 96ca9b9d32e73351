"""Alertmanager's webhook payload (version 4) read into our `Alert` values, so alerts from a
team's own Prometheus reach Telegram through the same groups, silences and outbox.

The payload is checked field by field; a bad one raises `PayloadError(message, field)` with
the JSON path of the offending field, never a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from alerts import AlertError
from alerts.model import Alert

MAX_ALERTS = 1000
MAX_TEXT = 4096  # per label or annotation value; longer ones are cut
# Alertmanager writes endsAt as this zero time for alerts that have not resolved
_ZERO = "0001-01-01T00:00:00Z"


class PayloadError(AlertError, ValueError):
    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.message, self.field = message, field


def _is_text(value: str) -> bool:
    """False for a string holding a lone surrogate (JSON "\\udc80"): no UTF-8 for it, so
    neither SQLite nor Telegram could take it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _strings(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError("must be an object of strings", where)
    out: dict[str, str] = {}
    for key, item in value.items():
        if not _is_text(str(key)):
            raise PayloadError("names must be valid Unicode (no lone surrogates)", where)
        if not isinstance(item, str):
            raise PayloadError("must be a string", f"{where}.{key}")
        if not _is_text(item):
            raise PayloadError("must be valid Unicode (no lone surrogates)", f"{where}.{key}")
        out[str(key)[:200]] = item[:MAX_TEXT]
    return out


def _time(value: Any, where: str) -> datetime | None:
    if value in (None, "", _ZERO):
        return None
    if not isinstance(value, str):
        raise PayloadError("must be an RFC 3339 time", where)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError("must be an RFC 3339 time", where) from None
    if when.tzinfo is None:
        raise PayloadError("must have a time zone", where)
    if when.year < 1000:  # other renderings of the zero time
        return None
    try:
        return when.astimezone(UTC)  # our alerts' times are UTC, whatever zone the sender's
    except OverflowError:  # "9999-12-31T23:59:59-23:59": past datetime's range in UTC
        raise PayloadError("must lie within the years 1000-9999 in UTC", where) from None


def parse(body: Any) -> list[Alert]:
    """The alerts of one webhook call, firing or resolved as Alertmanager says."""
    if not isinstance(body, Mapping):
        raise PayloadError("must be a JSON object", None)
    version = body.get("version")
    if version != "4":
        raise PayloadError('must be "4" (Alertmanager webhook payload version)', "version")
    items = body.get("alerts")
    if not isinstance(items, list):
        raise PayloadError("must be a list", "alerts")
    if len(items) > MAX_ALERTS:
        raise PayloadError(f"holds {len(items)} alerts; at most {MAX_ALERTS}", "alerts")
    out = []
    for i, item in enumerate(items):
        where = f"alerts[{i}]"
        if not isinstance(item, Mapping):
            raise PayloadError("must be an object", where)
        status = item.get("status")
        if status not in ("firing", "resolved"):
            raise PayloadError('must be "firing" or "resolved"', f"{where}.status")
        labels = _strings(item.get("labels"), f"{where}.labels")
        if not labels.get("alertname"):
            raise PayloadError("must have an alertname", f"{where}.labels")
        labels.setdefault("severity", "warning")
        annotations = _strings(item.get("annotations"), f"{where}.annotations")
        out.append(Alert(labels, annotations, status, _time(item.get("startsAt"),
                                                            f"{where}.startsAt"),
                         _time(item.get("endsAt"), f"{where}.endsAt"), "alertmanager"))
    return out
