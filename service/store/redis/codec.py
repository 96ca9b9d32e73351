"""How the Redis store crosses between Redis and the service's types: times as integer
microseconds since the epoch, models as hash fields and back, the argument lists the scripts
take, and Redis errors translated into `StoreError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.exceptions import RedisError, ResponseError

from service import StoreError
from service.models import (
    Attempt,
    Delivery,
    DeliveryState,
    Endpoint,
    Event,
    MatchRecord,
    Monitor,
    MonitorEvent,
    NewEvent,
    new_id,
)
from service.store import IDEMPOTENCY_WINDOW

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = timedelta(microseconds=1)


def _micros(when: datetime) -> int:
    return (when - EPOCH) // US  # exact integer arithmetic, unlike timestamp()


def _us(when: datetime) -> str:
    return str(_micros(when))


def _at(value: str) -> datetime:
    return EPOCH + int(float(value)) * US  # a zset score is a double in whatever notation


def _time(value: str) -> datetime | None:
    return _at(value) if value else None


def _hash(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _endpoint(h: dict[str, str]) -> Endpoint:
    return Endpoint(h["id"], h["url"], h["secret"], tuple(json.loads(h["types"])),
                    float(h["rate"]) if h["rate"] else None, h["desc"], h["disabled"] == "1",
                    h["reason"], _time(h["created"]), _time(h["failing"]))


def _event(h: dict[str, str]) -> Event:
    return Event(h["id"], h["type"], h["data"], _at(h["at"]), h["idem"] or None)


def _delivery(h: dict[str, str]) -> Delivery:
    return Delivery(h["id"], h["ev"], h["ep"], DeliveryState(h["st"]), int(h["n"]),
                    _time(h["next"]), _at(h["created"]), _time(h["acc"]))


def _attempt(raw: str) -> Attempt:
    a = json.loads(raw)
    return Attempt(a["number"], EPOCH + a["at"] * US, a["duration"], a["status"], a["error"],
                   a["headers"], a["body"])


def _attempt_json(a: Attempt) -> str:
    return json.dumps({"number": a.number, "at": _micros(a.at), "duration": a.duration,
                       "status": a.status_code, "error": a.error,
                       "headers": dict(a.response_headers), "body": a.response_body})


def _addresses(packed: str) -> frozenset[str]:
    return frozenset(["0x" + packed[i:i + 40] for i in range(0, len(packed), 40)])


def _monitor(h: dict[str, str]) -> Monitor:
    direction: Any = h["dir"]  # written from a Monitor: one of its Direction values
    return Monitor(id=h["id"], chain=h["chain"], endpoint_id=h["ep"],
                   addresses=_addresses(h["addrs"]), native=h["native"] == "1",
                   erc20=h["erc20"] == "1", erc721=h["erc721"] == "1",
                   contracts=_addresses(h["contracts"]), direction=direction,
                   confirmations=int(h["conf"]) if h["conf"] else None,
                   tags=tuple(json.loads(h["tags"])), enabled=h["enabled"] == "1",
                   created_at=_time(h["created"]), revision=int(h.get("rev", 0)))


def _monitor_fields(m: Monitor) -> list[str | int]:
    """The hash fields of a monitor, as field/value pairs (`rev` is the scripts' own)."""
    return ["id", m.id, "chain", m.chain, "ep", m.endpoint_id,
            "addrs", "".join(a[2:] for a in m.addresses),
            "native", int(m.native), "erc20", int(m.erc20), "erc721", int(m.erc721),
            "contracts", "".join(a[2:] for a in m.contracts), "dir", m.direction,
            "conf", "" if m.confirmations is None else m.confirmations,
            "tags", json.dumps(list(m.tags)), "enabled", int(m.enabled),
            "created", "" if m.created_at is None else _us(m.created_at)]


def _monitor_event(fields: list[str | None]) -> MonitorEvent:
    eid, etype, at, data, mon, kind, tx, addrs, block = (f or "" for f in fields)
    return MonitorEvent(MatchRecord(mon, kind, tx, tuple(addrs.split()), int(block)), eid,
                        etype, _at(at), data)


def _events_args(events: Sequence[NewEvent], now: datetime) -> list[str | int | float]:
    args: list[str | int | float] = [_us(now), int(IDEMPOTENCY_WINDOW * 1e6),
                                     int(IDEMPOTENCY_WINDOW), len(events)]
    for e in events:
        args += [new_id("evt"), e.type, e.serialised(), e.idempotency_key or ""]
    return args


def refused(exc: StoreError, code: str) -> bool:
    """Whether a store error is a script's own refusal (`redis.error_reply(code .. ...)`)."""
    return isinstance(exc.__cause__, ResponseError) and str(exc.__cause__).startswith(code)


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreError(f"redis store: {operation} failed: {exc}") from exc

