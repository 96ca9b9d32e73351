"""JSON shapes of the service's values, as the API returns them (secrets only on create)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from service.models import Attempt, Delivery, Endpoint, EventView


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def endpoint_json(e: Endpoint, with_secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": e.id,
        "url": e.url,
        "event_types": list(e.event_types),
        "rate_limit": e.rate_limit,
        "description": e.description,
        "disabled": e.disabled,
        "disabled_reason": e.disabled_reason or None,
        "created_at": _time(e.created_at),
        "failing_since": _time(e.failing_since),
    }
    if with_secret:
        out["secret"] = e.secret
    return out


def attempt_json(a: Attempt) -> dict[str, Any]:
    return {
        "number": a.number,
        "at": a.at.isoformat(),
        "duration_seconds": round(a.duration, 6),
        "status_code": a.status_code,
        "error": a.error or None,
        "response_headers": dict(a.response_headers),
        "response_body": a.response_body,
    }


def delivery_json(d: Delivery, attempts: tuple[Attempt, ...] = ()) -> dict[str, Any]:
    return {
        "id": d.id,
        "endpoint_id": d.endpoint_id,
        "state": d.state.value,
        "attempts": [attempt_json(a) for a in attempts],
        "next_attempt_at": _time(d.next_attempt_at),
        "created_at": d.created_at.isoformat(),
    }


def event_view_json(view: EventView) -> dict[str, Any]:
    e = view.event
    return {
        "id": e.id,
        "type": e.type,
        "data": e.data,
        "idempotency_key": e.idempotency_key,
        "accepted_at": e.accepted_at.isoformat(),
        "deliveries": [delivery_json(d, attempts) for d, attempts in view.deliveries],
    }
