"""JSON shapes of the service's values, as the API returns them (secrets only on create).

Addresses go out lower-case, as they are stored and as webhook payloads carry them: one
spelling to compare against, and no hashing of 100,000 addresses per response. A monitor's
address list is only in `GET /v1/monitors/{id}`; everything else gives `address_count`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from service.models import Attempt, Delivery, Endpoint, EventView, Monitor, MonitorEvent


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


def monitor_json(m: Monitor, chains: Mapping[str, int],
                 with_addresses: bool = False) -> dict[str, Any]:
    """`chains`: configured chain name -> default confirmations."""
    out: dict[str, Any] = {
        "id": m.id,
        "chain": m.chain,
        "endpoint_id": m.endpoint_id,
        "enabled": m.enabled,
        "direction": m.direction,
        "conditions": {"native": m.native, "erc20": m.erc20, "erc721": m.erc721,
                       "contracts": sorted(m.contracts)},
        "confirmations": m.confirmations,  # null: the chain's default
        "effective_confirmations": (m.confirmations if m.confirmations is not None
                                    else chains.get(m.chain)),
        "tags": list(m.tags),
        "address_count": len(m.addresses),
        "created_at": _time(m.created_at),
    }
    if with_addresses:
        out["addresses"] = sorted(m.addresses)
    return out


def monitor_event_json(e: MonitorEvent) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "type": e.event_type,
        "tx_hash": e.match.tx_hash,
        "block_number": e.match.block_number,
        "addresses": list(e.match.addresses),
        "accepted_at": e.accepted_at.isoformat(),
        "data": e.data,
    }
