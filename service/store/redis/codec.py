"""How the Redis store crosses between Redis and the service's types: times as strings of
integer microseconds since the epoch (`service.store.times`), models as hash fields and back,
the argument lists the scripts take, and Redis errors translated into `StoreError`.

Format versions: the keyspace's is the `<prefix>:format` key (`RedisStore.open` sets it with
SET NX and refuses a keyspace of another version). A record hash may say its own in a `v`
field; records of FORMAT have none, so the Lua writes them as before, and a record whose `v`
this build does not know (a newer build's, during a rolling upgrade) is refused by the
decoders with `StoreError` naming it, never misread.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import msgspec
from redis.exceptions import RedisError, ResponseError

from core.formats import FormatError
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
from service.store.times import from_us, to_us

FORMAT = 1  # of the keyspace and of the records; records of this format carry no `v`
KNOWN_FORMATS = (FORMAT,)  # the versions this build reads


def check_format(found: str | None, where: str) -> None:
    """`StoreError` naming `where` unless `found` (a stored version; None: FORMAT, written
    before versions were stored) is one this build knows."""
    if found is not None and found not in {str(v) for v in KNOWN_FORMATS}:
        raise StoreError(str(FormatError(f"redis store: {where}", found, KNOWN_FORMATS)))


def _known(h: dict[str, str], kind: str) -> dict[str, str]:
    if "v" in h:
        check_format(h["v"], f"{kind} {h.get('id', '?')}")
    return h


def encode_time(when: datetime) -> str:
    """A time as the scripts take and store it: its microseconds, in decimal."""
    return str(to_us(when))


def decode_time(value: str, memo: dict[str, datetime] | None = None) -> datetime:
    """A time stored by `encode_time`, or read back as a zset score (a double, in whatever
    notation Redis prints it). `memo`: times decoded before, kept by a caller decoding many
    rows that share a few (a claim's deliveries and events)."""
    if memo is None:
        return from_us(int(float(value)))
    when = memo.get(value)
    if when is None:
        when = memo[value] = from_us(int(float(value)))
    return when


def decode_optional_time(value: str, memo: dict[str, datetime] | None = None,
                         ) -> datetime | None:
    """`decode_time`, with '' (no time) as None."""
    return decode_time(value, memo) if value else None


def flat_hash(flat: list[str]) -> dict[str, str]:
    """A hash as HGETALL-style scripts return it (field, value, field, value ...) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def decode_endpoint(h: dict[str, str]) -> Endpoint:
    """The endpoint an `ep:<id>` hash holds."""
    h = _known(h, "endpoint")
    return Endpoint(h["id"], h["url"], h["secret"], tuple(json.loads(h["types"])),
                    float(h["rate"]) if h["rate"] else None, h["desc"], h["disabled"] == "1",
                    h["reason"], decode_optional_time(h["created"]),
                    decode_optional_time(h["failing"]))


def decode_event(h: dict[str, str], memo: dict[str, datetime] | None = None) -> Event:
    """The event an `ev:<id>` hash holds (`memo` as in `decode_time`)."""
    h = _known(h, "event")
    return Event(h["id"], h["type"], h["data"], decode_time(h["at"], memo), h["idem"] or None)


def decode_delivery(h: dict[str, str], memo: dict[str, datetime] | None = None) -> Delivery:
    """The delivery a `dl:<id>` hash holds (`memo` as in `decode_time`)."""
    h = _known(h, "delivery")
    return Delivery(h["id"], h["ev"], h["ep"], DeliveryState(h["st"]), int(h["n"]),
                    decode_optional_time(h["next"], memo), decode_time(h["created"], memo),
                    decode_optional_time(h["acc"], memo))


def decode_attempt(raw: str) -> Attempt:
    """An attempt from its JSON in an `att:<id>` list (see `encode_attempt`)."""
    a = json.loads(raw)
    return Attempt(a["number"], from_us(a["at"]), a["duration"], a["status"], a["error"],
                   a["headers"], a["body"])


def encode_attempt(a: Attempt) -> str:
    """An attempt as the JSON the SETTLE script appends to its delivery's attempts (msgspec:
    a fifth of `json.dumps`' time, which this costs once per delivery)."""
    return _JSON.encode({"number": a.number, "at": to_us(a.at), "duration": a.duration,
                         "status": a.status_code, "error": a.error,
                         "headers": dict(a.response_headers),
                         "body": a.response_body}).decode()


_JSON = msgspec.json.Encoder()


def _addresses(packed: str) -> frozenset[str]:
    return frozenset(["0x" + packed[i:i + 40] for i in range(0, len(packed), 40)])


def decode_monitor(h: dict[str, str]) -> Monitor:
    """The monitor a `mon:<id>` hash holds."""
    h = _known(h, "monitor")
    direction: Any = h["dir"]  # written from a Monitor: one of its Direction values
    return Monitor(id=h["id"], chain=h["chain"], endpoint_id=h["ep"],
                   addresses=_addresses(h["addrs"]), native=h["native"] == "1",
                   erc20=h["erc20"] == "1", erc721=h["erc721"] == "1",
                   contracts=_addresses(h["contracts"]), direction=direction,
                   confirmations=int(h["conf"]) if h["conf"] else None,
                   tags=tuple(json.loads(h["tags"])), enabled=h["enabled"] == "1",
                   created_at=decode_optional_time(h["created"]),
                   revision=int(h.get("rev", 0)))


def monitor_fields(m: Monitor) -> list[str | int]:
    """The hash fields of a monitor, as field/value pairs (`rev` is the scripts' own)."""
    return ["id", m.id, "chain", m.chain, "ep", m.endpoint_id,
            "addrs", "".join(a[2:] for a in m.addresses),
            "native", int(m.native), "erc20", int(m.erc20), "erc721", int(m.erc721),
            "contracts", "".join(a[2:] for a in m.contracts), "dir", m.direction,
            "conf", "" if m.confirmations is None else m.confirmations,
            "tags", json.dumps(list(m.tags)), "enabled", int(m.enabled),
            "created", "" if m.created_at is None else encode_time(m.created_at)]


def decode_monitor_event(fields: list[str | None]) -> MonitorEvent:
    """A history entry as MONITOR_EVENTS returns it: the event's fields, then its match's."""
    eid, etype, at, data, mon, kind, tx, addrs, block = (f or "" for f in fields)
    return MonitorEvent(MatchRecord(mon, kind, tx, tuple(addrs.split()), int(block)), eid,
                        etype, decode_time(at), data)


def events_args(events: Sequence[NewEvent], now: datetime) -> list[str | int | float]:
    """The arguments ACCEPT (and, with its own inserted, ADVANCE) takes for `events`: now,
    the idempotency window (µs) and key lifetime (s), the count, then four per event."""
    args: list[str | int | float] = [encode_time(now), int(IDEMPOTENCY_WINDOW * 1e6),
                                     int(IDEMPOTENCY_WINDOW), len(events)]
    for e in events:
        args += [new_id("evt"), e.type, e.serialised(), e.idempotency_key or ""]
    return args


def refused(exc: StoreError, code: str) -> bool:
    """Whether a store error is a script's own refusal (`redis.error_reply(code .. ...)`)."""
    return isinstance(exc.__cause__, ResponseError) and str(exc.__cause__).startswith(code)


@contextmanager
def translated(operation: str) -> Iterator[None]:
    """Raise a Redis or connection error inside as `StoreError` naming `operation`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreError(f"redis store: {operation} failed: {exc}") from exc

