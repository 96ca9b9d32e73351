"""Tables of the SQLite backend and the statements each store operation runs.

Fan-out is written as one `fanouts` row per accept call and endpoint, not one delivery row
per event and endpoint: a 1000-event batch costs its event rows and one row per endpoint
that wants any of them. Each fan-out row holds the call's event id range, which of those
events the endpoint wants (`offsets`, uint32 offsets from `first_event`; NULL: all, in
order), and the ids its deliveries will have (`first_delivery` + k). `claim` turns the oldest
fan-out rows into delivery rows, `done` at a time, just before it leases; until then a
delivery is pending with no attempts, which is what every read reports for it. Which
endpoints get an event is decided at acceptance, as before; only the rows come later.

Address monitors keep their addresses as one blob of 20-byte values per row (100,000
addresses are 2 MB, read whole when followers reload). A follower's events carry a route:
the one endpoint of their monitor instead of every endpoint that wants the type. `matches`
holds one row per event a monitor caused, `match_addresses` indexes it by watched address.

Plain functions of a connection, called by `sqlite_store` inside its transactions; times are
integer microseconds since the epoch (exact round trips, cheap comparisons and indexes).
"""
# SQL text here is assembled only from this module's constants; values always travel as
# `?` parameters, so the string-built-query warning does not apply.
# ruff: noqa: S608

from __future__ import annotations

import bisect
import json
import sqlite3
import time
from array import array
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from service.models import (
    Attempt,
    Claim,
    Delivery,
    DeliveryState,
    Endpoint,
    Event,
    EventView,
    MatchRecord,
    Monitor,
    MonitorEvent,
    NewEvent,
    QueueStats,
)
from service.store import IDEMPOTENCY_WINDOW, Settled

VERSION = 5  # 2: integer row ids; 3: fan-out rows, deliveries made when claimed; 4: monitors;
# 5: monitor revisions
UPGRADABLE = (0, 3, 4)  # versions `upgrade` and the schema script bring up to VERSION
ACTIVE = "state IN ('pending', 'retrying')"  # partial indexes below repeat it verbatim
# A leased delivery becomes claimable when its lease ends, so the claim index orders by the
# later of the two times: claim then walks due rows only, never past in-flight ones.
READY = "max(next_attempt_at, ifnull(lease_until, 0))"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS endpoints (
    id TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL,
    event_types TEXT NOT NULL, rate_limit REAL, description TEXT NOT NULL,
    disabled INTEGER NOT NULL, disabled_reason TEXT NOT NULL,
    created_at INTEGER, failing_since INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, type TEXT NOT NULL, data TEXT NOT NULL,
    accepted_at INTEGER NOT NULL, idempotency_key TEXT
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, event_id INTEGER NOT NULL, expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idempotency_expiry ON idempotency (expires_at);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY, event_id INTEGER NOT NULL, endpoint_id TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at INTEGER,
    created_at INTEGER NOT NULL, lease_until INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_ready ON deliveries ({READY}, created_at) WHERE {ACTIVE};
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (endpoint_id, created_at)
    WHERE state = 'dead';
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id INTEGER NOT NULL, number INTEGER NOT NULL, at INTEGER NOT NULL,
    duration REAL NOT NULL, status_code INTEGER, error TEXT NOT NULL,
    response_headers TEXT NOT NULL, response_body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id, number);
CREATE TABLE IF NOT EXISTS fanouts (
    id INTEGER PRIMARY KEY, endpoint_id TEXT NOT NULL, first_event INTEGER NOT NULL,
    last_event INTEGER NOT NULL, offsets BLOB, first_delivery INTEGER NOT NULL,
    total INTEGER NOT NULL, done INTEGER NOT NULL, created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS fanouts_open ON fanouts (id) WHERE done < total;
CREATE INDEX IF NOT EXISTS fanouts_range ON fanouts (first_event);
CREATE TABLE IF NOT EXISTS monitors (
    id TEXT PRIMARY KEY, chain TEXT NOT NULL, endpoint_id TEXT NOT NULL,
    addresses BLOB NOT NULL, native INTEGER NOT NULL, erc20 INTEGER NOT NULL,
    erc721 INTEGER NOT NULL, contracts BLOB NOT NULL, direction TEXT NOT NULL,
    confirmations INTEGER, tags TEXT NOT NULL, enabled INTEGER NOT NULL, created_at INTEGER,
    revision INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)
    WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY, state TEXT NOT NULL, saved_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS matches (
    event_id INTEGER PRIMARY KEY, monitor_id TEXT NOT NULL, kind TEXT NOT NULL,
    tx_hash TEXT NOT NULL, addresses TEXT NOT NULL, block_number INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS matches_monitor ON matches (monitor_id, event_id);
CREATE INDEX IF NOT EXISTS matches_tx ON matches (monitor_id, tx_hash, event_id);
CREATE TABLE IF NOT EXISTS match_addresses (
    monitor_id TEXT NOT NULL, address TEXT NOT NULL, event_id INTEGER NOT NULL,
    PRIMARY KEY (monitor_id, address, event_id)
) WITHOUT ROWID;
PRAGMA user_version = {VERSION};
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_WINDOW_US = int(IDEMPOTENCY_WINDOW * 1_000_000)

_ENDPOINT = ("id, url, secret, event_types, rate_limit, description, disabled, disabled_reason,"
             " created_at, failing_since")
_EVENT = "e.id, e.type, e.data, e.accepted_at, e.idempotency_key"
_DELIVERY = ("d.id, d.event_id, d.endpoint_id, d.state, d.attempts, d.next_attempt_at,"
             " d.created_at, e.accepted_at")
_ATTEMPT = ("delivery_id, number, at, duration, status_code, error, response_headers,"
            " response_body")
# CROSS JOIN pins deliveries as the outer loop, so the ready index drives the claim; ACTIVE
# and READY stay unqualified (their columns are only in deliveries) to match the index text.
CLAIM_SQL = f"""
SELECT {_DELIVERY}, {_EVENT}, {", ".join("p." + c for c in _ENDPOINT.split(", "))}
FROM deliveries d CROSS JOIN events e ON e.id = d.event_id
     CROSS JOIN endpoints p ON p.id = d.endpoint_id
WHERE {ACTIVE} AND {READY} <= ? AND p.disabled = 0
ORDER BY {READY}, d.created_at, d.rowid LIMIT ?
"""


def to_us(t: datetime) -> int:
    return (t - _EPOCH) // _US


def _us(t: datetime | None) -> int | None:
    return None if t is None else to_us(t)


def _dt(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us)


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _endpoint(row: Sequence[Any]) -> Endpoint:
    return Endpoint(row[0], row[1], row[2], tuple(json.loads(row[3])), row[4], row[5],
                    bool(row[6]), row[7], _dt(row[8]), _dt(row[9]))


class IdClock:
    """Row ids of events and deliveries: microseconds << 12 | a sequence, so they sort by
    time (inserts append to the tables' b-trees) and carry it (a wiped data_dir does not
    hand out the same webhook-ids again). Strictly increasing within the file, even when
    the clock steps back. Shown as `evt_` / `msg_` and 16 hex digits."""

    def __init__(self, last: int = 0) -> None:
        self.last = last

    def take(self, n: int) -> int:
        """The first of `n` consecutive fresh ids."""
        first = max((time.time_ns() // 1000) << 12, self.last + 1)
        self.last = first + n - 1
        return first

    @staticmethod
    def resume(conn: sqlite3.Connection) -> IdClock:
        (last,) = conn.execute("SELECT max(ifnull((SELECT max(id) FROM events), 0),"
                               " ifnull((SELECT max(id) FROM deliveries), 0))").fetchone()
        return IdClock(last)


def event_ref(n: int) -> str:
    return f"evt_{n:016x}"


def delivery_ref(n: int) -> str:
    return f"msg_{n:016x}"


def row_id(text: str, prefix: str) -> int | None:
    """The row id an `evt_`/`msg_` id names; None for anything this store never made."""
    if len(text) != 20 or not text.startswith(prefix):
        return None
    try:
        return int(text[4:], 16)
    except ValueError:
        return None


def check_version(conn: sqlite3.Connection) -> None:
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    if found not in (*UPGRADABLE, VERSION):
        raise sqlite3.DatabaseError(
            f"the file has schema version {found}, this build reads version {VERSION}; "
            "move the file away to start afresh")


def upgrade(conn: sqlite3.Connection) -> None:
    """Bring a file of an older version up to VERSION, in one transaction (the caller's
    connection is in autocommit mode)."""
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    steps = "ALTER TABLE monitors ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;" \
        if found == 4 else ""
    conn.executescript(f"BEGIN IMMEDIATE; {steps} {SCHEMA} COMMIT;")


def _event(row: Sequence[Any]) -> Event:
    return Event(event_ref(row[0]), row[1], row[2], _at(row[3]), row[4])


def _delivery(row: Sequence[Any]) -> Delivery:
    return Delivery(delivery_ref(row[0]), event_ref(row[1]), row[2], DeliveryState(row[3]),
                    row[4], _dt(row[5]),
                    _at(row[6]), _dt(row[7]))


def _attempt(row: Sequence[Any]) -> Attempt:
    return Attempt(row[1], _at(row[2]), row[3], row[4], row[5], json.loads(row[6]), row[7])


# --- endpoints ---------------------------------------------------------------------------
def put_endpoint(conn: sqlite3.Connection, ep: Endpoint) -> None:
    updates = ", ".join(f"{c} = excluded.{c}" for c in _ENDPOINT.split(", ")[1:])
    # an upsert, not INSERT OR REPLACE, keeps the row (and so the listing order) stable
    conn.execute(f"INSERT INTO endpoints ({_ENDPOINT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                 f" ON CONFLICT (id) DO UPDATE SET {updates}",
                 (ep.id, ep.url, ep.secret, json.dumps(list(ep.event_types)), ep.rate_limit,
                  ep.description, int(ep.disabled), ep.disabled_reason, _us(ep.created_at),
                  _us(ep.failing_since)))


def get_endpoint(conn: sqlite3.Connection, endpoint_id: str) -> Endpoint | None:
    row = conn.execute(f"SELECT {_ENDPOINT} FROM endpoints WHERE id = ?",
                       (endpoint_id,)).fetchone()
    return None if row is None else _endpoint(row)


def list_endpoints(conn: sqlite3.Connection) -> list[Endpoint]:
    return [_endpoint(r) for r in conn.execute(f"SELECT {_ENDPOINT} FROM endpoints ORDER BY rowid")]


def delete_endpoint(conn: sqlite3.Connection, endpoint_id: str) -> bool:
    if conn.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,)).rowcount == 0:
        return False
    for row in conn.execute(f"SELECT {_FANOUT} FROM fanouts WHERE endpoint_id = ?"
                            " AND done < total", (endpoint_id,)).fetchall():
        _make_deliveries(conn, row, row[5], "dead")  # rare: made now, and dead at once
    conn.execute(f"UPDATE deliveries SET state = 'dead', next_attempt_at = NULL,"
                 f" lease_until = NULL WHERE endpoint_id = ? AND {ACTIVE}", (endpoint_id,))
    return True


# --- events ------------------------------------------------------------------------------
def accept(conn: sqlite3.Connection, events: Sequence[NewEvent], now: datetime,
           endpoints: Sequence[Endpoint], prune: bool, clock: IdClock,
           routes: Sequence[str] | None = None) -> list[str]:
    """Store the events and their fan-out. `routes`, when given, names for each event the
    one endpoint it may go to ('' for none) in place of every endpoint that wants it."""
    at = to_us(now)
    if prune:
        conn.execute("DELETE FROM idempotency WHERE expires_at <= ?", (at,))
    ids: list[str] = []
    fresh: dict[str, int] = {}  # keys first seen in this call
    event_rows: list[tuple[int, str, str, int, str | None]] = []
    key_rows: list[tuple[str, int, int]] = []
    wanted: dict[str, list[int]] = {}  # endpoint: offsets of the events it wants
    by_type: dict[tuple[str, str | None], list[list[int]]] = {}
    first = n = clock.take(len(events))
    for i, ev in enumerate(events):
        key = ev.idempotency_key
        if key is not None:
            seen = fresh.get(key) or _known_key(conn, key, at)
            if seen is not None:
                ids.append(event_ref(seen))
                continue
        ids.append(event_ref(n))
        event_rows.append((n, ev.type, ev.serialised(), at, key))
        if key is not None:
            fresh[key] = n
            key_rows.append((key, n, at + _WINDOW_US))
        route = None if routes is None else routes[i]
        lists = by_type.get((ev.type, route))
        if lists is None:
            lists = by_type[ev.type, route] = [
                wanted.setdefault(ep.id, []) for ep in endpoints
                if ep.wants(ev.type) and (route is None or ep.id == route)]
        for offsets in lists:
            offsets.append(n - first)
        n += 1
    conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", event_rows)
    if key_rows:
        conn.executemany("INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?)", key_rows)
    fanouts = []
    for endpoint_id, offsets in wanted.items():
        if not offsets:
            continue
        total = len(offsets)  # offsets increase, so the last one tells whether all are there
        packed = None if offsets[-1] == total - 1 else array("I", offsets).tobytes()
        fanouts.append((endpoint_id, first, n - 1, packed, clock.take(total), total, at))
    conn.executemany("INSERT INTO fanouts (endpoint_id, first_event, last_event, offsets,"
                     " first_delivery, total, done, created_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
                     fanouts)
    return ids


_FANOUT = "id, endpoint_id, first_event, offsets, first_delivery, total, done, created_at"
_MAKE = ("INSERT INTO deliveries (id, event_id, endpoint_id, state, attempts, next_attempt_at,"
         " created_at) VALUES (?, ?, ?, ?, 0, ?, ?)")


def _offsets(packed: bytes | None, total: int) -> Sequence[int]:
    return range(total) if packed is None else array("I", packed)


def _make_deliveries(conn: sqlite3.Connection, row: Sequence[Any], upto: int,
                     state: str = "pending") -> None:
    """Delivery rows done..upto-1 of fan-out `row` (columns as in _FANOUT)."""
    fid, endpoint_id, first, packed, first_delivery, total, done, created = row
    offsets = _offsets(packed, total)
    due = created if state == "pending" else None
    conn.executemany(_MAKE, [(first_delivery + k, first + offsets[k], endpoint_id, state, due,
                              created) for k in range(done, upto)])
    conn.execute("UPDATE fanouts SET done = ? WHERE id = ?", (upto, fid))


def materialise(conn: sqlite3.Connection, budget: int) -> None:
    """Turn up to `budget` of the oldest not-yet-made deliveries into rows."""
    for row in conn.execute(f"SELECT {_FANOUT} FROM fanouts WHERE done < total ORDER BY id"
                            " LIMIT ?", (budget,)).fetchall():
        if budget <= 0:
            break
        upto = min(row[5], row[6] + budget)
        _make_deliveries(conn, row, upto)
        budget -= upto - row[6]


def _unmade(conn: sqlite3.Connection, event: int) -> list[tuple[int, str, int, bool]]:
    """The deliveries of one event by fan-out: (delivery id, endpoint, created, made)."""
    (base,) = conn.execute("SELECT max(first_event) FROM fanouts WHERE first_event <= ?",
                           (event,)).fetchone()
    if base is None:
        return []
    out = []
    for _, endpoint_id, first, packed, first_delivery, total, done, created in conn.execute(
            f"SELECT {_FANOUT} FROM fanouts WHERE first_event = ? AND last_event >= ?"
            " ORDER BY id", (base, event)):
        offset = event - first
        if packed is None:
            k = offset
        else:
            offsets = array("I", packed)
            k = bisect.bisect_left(offsets, offset)
            if k == total or offsets[k] != offset:
                continue  # this endpoint did not want this event
        out.append((first_delivery + k, endpoint_id, created, k < done))
    return out


def _pending(delivery: int, event: int, endpoint_id: str, created: int) -> Delivery:
    at = _at(created)
    return Delivery(delivery_ref(delivery), event_ref(event), endpoint_id,
                    DeliveryState.PENDING, 0, at, at, at)


def _known_key(conn: sqlite3.Connection, key: str, at: int) -> int | None:
    row = conn.execute("SELECT event_id FROM idempotency WHERE key = ? AND expires_at > ?",
                       (key, at)).fetchone()
    return None if row is None else int(row[0])


def get_event(conn: sqlite3.Connection, ref: str) -> EventView | None:
    n = row_id(ref, "evt_")
    row = None if n is None else conn.execute(f"SELECT {_EVENT} FROM events e WHERE e.id = ?",
                                              (n,)).fetchone()
    if row is None or n is None:
        return None
    fanned = _unmade(conn, n)
    made = [d for d, _, _, is_made in fanned if is_made]
    marks = ", ".join("?" * len(made))
    attempts: dict[int, list[Attempt]] = {}
    rows: dict[int, Delivery] = {}
    if made:
        for a in conn.execute(f"SELECT {_ATTEMPT} FROM attempts WHERE delivery_id IN ({marks})"
                              " ORDER BY number, rowid", made):
            attempts.setdefault(a[0], []).append(_attempt(a))
        rows = {r[0]: _delivery(r) for r in conn.execute(
            f"SELECT {_DELIVERY} FROM deliveries d JOIN events e ON e.id = d.event_id"
            f" WHERE d.id IN ({marks})", made)}
    views = []
    for did, endpoint_id, created, is_made in fanned:
        delivery = rows.get(did) if is_made else _pending(did, n, endpoint_id, created)
        if delivery is not None:
            views.append((delivery, tuple(attempts.get(did, ()))))
    return EventView(_event(row), tuple(views))


# --- queue -------------------------------------------------------------------------------
def claim(conn: sqlite3.Connection, limit: int, now: datetime, lease: float) -> list[Claim]:
    if limit <= 0:
        return []  # SQLite reads a negative LIMIT as "no limit"
    until = to_us(now) + int(lease * 1_000_000)
    materialise(conn, limit)
    rows = conn.execute(CLAIM_SQL, (to_us(now), limit)).fetchall()
    conn.executemany("UPDATE deliveries SET lease_until = ? WHERE id = ?",
                     [(until, r[0]) for r in rows])
    # the lease's end doubles as its token: a later claim always ends later
    token = str(until)
    endpoints: dict[tuple[Any, ...], Endpoint] = {}
    claims = []
    for r in rows:
        ep_row = r[13:]  # a batch mostly repeats a few endpoints: build each once
        ep = endpoints.get(ep_row)
        if ep is None:
            ep = endpoints[ep_row] = _endpoint(ep_row)
        claims.append(Claim(_delivery(r[:8]), _event(r[8:13]), ep, token, _at(until)))
    return claims


# Only the current lease holder moves the state: a worker whose lease ran out and was claimed
# again must not overwrite the newer outcome (its attempt is still recorded and counted).
# SET expressions all see the row as it was, so each CASE tests the old lease.
_SETTLE = """UPDATE deliveries SET attempts = attempts + 1,
    state = CASE WHEN lease_until = ?1 THEN ?2 ELSE state END,
    next_attempt_at = CASE WHEN lease_until = ?1 THEN ?3 ELSE next_attempt_at END,
    lease_until = CASE WHEN lease_until = ?1 THEN NULL ELSE lease_until END
WHERE id = ?4"""


def settle(conn: sqlite3.Connection, outcomes: Sequence[Settled]) -> None:
    attempts, updates = [], []
    streaks: dict[str, tuple[int | None, str]] = {}  # endpoint: (failing since, disable)
    for c, attempt, verdict in outcomes:
        did = row_id(c.delivery.id, "msg_")
        attempts.append((did, attempt.number, to_us(attempt.at), attempt.duration,
                         attempt.status_code, attempt.error,
                         json.dumps(dict(attempt.response_headers)), attempt.response_body))
        due = None
        if verdict.state in (DeliveryState.PENDING, DeliveryState.RETRYING):
            due = to_us(verdict.next_attempt_at or attempt.at)
        updates.append((int(c.lease_token), verdict.state.value, due, did))
        # in order, as one settle after another would: the last verdict sets the streak,
        # and a disabling one is never undone by a later one in the same batch
        reason = verdict.disable_endpoint or streaks.get(c.endpoint.id, (None, ""))[1]
        streaks[c.endpoint.id] = (_us(verdict.endpoint_failing_since), reason)
    conn.executemany(f"INSERT INTO attempts ({_ATTEMPT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     attempts)
    conn.executemany(_SETTLE, updates)
    for endpoint_id, (failing, reason) in streaks.items():
        if reason:
            conn.execute("UPDATE endpoints SET failing_since = ?, disabled = 1,"
                         " disabled_reason = ? WHERE id = ?", (failing, reason, endpoint_id))
        else:  # the guard spares a page write per success when nothing changes
            conn.execute("UPDATE endpoints SET failing_since = ? WHERE id = ?"
                         " AND failing_since IS NOT ?", (failing, endpoint_id, failing))


def release(conn: sqlite3.Connection, claims: Sequence[Claim]) -> None:
    conn.executemany("UPDATE deliveries SET lease_until = NULL WHERE id = ? AND lease_until = ?",
                     [(row_id(c.delivery.id, "msg_"), int(c.lease_token)) for c in claims])


def clear_leases(conn: sqlite3.Connection) -> None:
    conn.execute(f"UPDATE deliveries SET lease_until = NULL"
                 f" WHERE {ACTIVE} AND lease_until IS NOT NULL")


def replay(conn: sqlite3.Connection, endpoint_id: str, since: datetime | None,
           until: datetime | None, now: datetime) -> int:
    window = "".join(f" AND created_at {op} ?" for op, t in ((">=", since), ("<=", until))
                     if t is not None)
    bounds = [to_us(t) for t in (since, until) if t is not None]
    # a deleted endpoint's deliveries stay dead: nothing could ever claim them again
    return conn.execute("UPDATE deliveries SET state = 'pending', next_attempt_at = ?,"
                        " lease_until = NULL WHERE endpoint_id = ? AND state = 'dead'" + window +
                        " AND EXISTS (SELECT 1 FROM endpoints WHERE id = ?)",
                        (to_us(now), endpoint_id, *bounds, endpoint_id)).rowcount


def stats(conn: sqlite3.Connection, now: datetime) -> QueueStats:
    # A delivery is created with its event, so its created_at is the event's accepted_at.
    depth, oldest = conn.execute(
        f"SELECT count(*), min(created_at) FROM deliveries WHERE {ACTIVE}").fetchone()
    unmade, first = conn.execute("SELECT ifnull(sum(total - done), 0), min(created_at)"
                                 " FROM fanouts WHERE done < total").fetchone()
    depth += unmade
    oldest = min((t for t in (oldest, first) if t is not None), default=None)
    (disabled,) = conn.execute("SELECT count(*) FROM endpoints WHERE disabled = 1").fetchone()
    age = 0.0 if oldest is None else max(0.0, (to_us(now) - oldest) / 1_000_000)
    return QueueStats(depth, age, disabled)


def deliveries_of(conn: sqlite3.Connection, endpoint_id: str) -> list[Delivery]:
    out = [_delivery(r) for r in conn.execute(
        f"SELECT {_DELIVERY} FROM deliveries d JOIN events e ON e.id = d.event_id"
        " WHERE d.endpoint_id = ?", (endpoint_id,))]
    for _, _, first, packed, first_delivery, total, done, created in conn.execute(
            f"SELECT {_FANOUT} FROM fanouts WHERE endpoint_id = ? AND done < total",
            (endpoint_id,)):
        offsets = _offsets(packed, total)
        out += [_pending(first_delivery + k, first + offsets[k], endpoint_id, created)
                for k in range(done, total)]
    out.sort(key=lambda d: (d.created_at, d.id))
    return out


# --- address monitors and followers ----------------------------------------------------
_MONITOR = ("id, chain, endpoint_id, addresses, native, erc20, erc721, contracts, direction,"
            " confirmations, tags, enabled, created_at")  # then `revision`, which we set
_MATCH = ("m.event_id, m.monitor_id, m.kind, m.tx_hash, m.addresses, m.block_number, e.type,"
          " e.accepted_at, e.data")


def pack_addresses(addresses: Iterable[str]) -> bytes:
    """Lower-case `0x` + 40 hex addresses as one blob of 20 bytes each."""
    return bytes.fromhex("".join(a[2:] for a in addresses))


def unpack_addresses(blob: bytes) -> frozenset[str]:
    h = blob.hex()
    return frozenset(["0x" + h[i:i + 40] for i in range(0, len(h), 40)])


def _monitor(row: Sequence[Any]) -> Monitor:
    return Monitor(id=row[0], chain=row[1], endpoint_id=row[2],
                   addresses=unpack_addresses(row[3]), native=bool(row[4]),
                   erc20=bool(row[5]), erc721=bool(row[6]),
                   contracts=unpack_addresses(row[7]), direction=row[8],
                   confirmations=row[9], tags=tuple(json.loads(row[10])),
                   enabled=bool(row[11]), created_at=_dt(row[12]), revision=row[13])


def _bump_monitors(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO counters VALUES ('monitors', 1)"
                 " ON CONFLICT (name) DO UPDATE SET value = value + 1")


def _monitor_row(m: Monitor, addresses: bytes) -> tuple[Any, ...]:
    return (m.id, m.chain, m.endpoint_id, addresses, int(m.native), int(m.erc20),
            int(m.erc721), pack_addresses(m.contracts), m.direction, m.confirmations,
            json.dumps(list(m.tags)), int(m.enabled), _us(m.created_at))


def put_monitor(conn: sqlite3.Connection, m: Monitor, addresses: bytes) -> None:
    """`addresses`: `pack_addresses(m.addresses)`, made before the write waits its turn."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in _MONITOR.split(", ")[1:])
    conn.execute(f"INSERT INTO monitors ({_MONITOR}, revision) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
                 f" ?, ?, ?, ?, ?, 1) ON CONFLICT (id) DO UPDATE SET {updates},"
                 " revision = revision + 1", _monitor_row(m, addresses))
    _bump_monitors(conn)


def replace_monitor(conn: sqlite3.Connection, m: Monitor, addresses: bytes) -> bool:
    columns = _MONITOR.split(", ")[1:]
    row = _monitor_row(m, addresses)
    changed = conn.execute(
        f"UPDATE monitors SET {', '.join(f'{c} = ?' for c in columns)},"
        " revision = revision + 1 WHERE id = ? AND revision = ?",
        (*row[1:], m.id, m.revision)).rowcount
    if changed:
        _bump_monitors(conn)
    return bool(changed)


def get_monitor(conn: sqlite3.Connection, monitor_id: str) -> Monitor | None:
    row = conn.execute(f"SELECT {_MONITOR}, revision FROM monitors WHERE id = ?",
                       (monitor_id,)).fetchone()
    return None if row is None else _monitor(row)


def list_monitors(conn: sqlite3.Connection, chain: str | None) -> list[Monitor]:
    if chain is None:
        rows = conn.execute(f"SELECT {_MONITOR}, revision FROM monitors ORDER BY rowid")
    else:
        rows = conn.execute(f"SELECT {_MONITOR}, revision FROM monitors WHERE chain = ?"
                            " ORDER BY rowid",
                            (chain,))
    return [_monitor(r) for r in rows]


def delete_monitor(conn: sqlite3.Connection, monitor_id: str) -> bool:
    if conn.execute("DELETE FROM monitors WHERE id = ?", (monitor_id,)).rowcount == 0:
        return False
    _bump_monitors(conn)
    return True


def monitors_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM counters WHERE name = 'monitors'").fetchone()
    return 0 if row is None else int(row[0])


def get_cursor(conn: sqlite3.Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT state FROM cursors WHERE name = ?", (name,)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def _routes(conn: sqlite3.Connection, monitor_ids: Iterable[str]) -> dict[str, str]:
    """The endpoint each monitor's events go to: '' when it is gone or disabled."""
    out = {}
    for monitor_id in monitor_ids:
        row = conn.execute("SELECT endpoint_id FROM monitors WHERE id = ? AND enabled = 1",
                           (monitor_id,)).fetchone()
        out[monitor_id] = "" if row is None else row[0]
    return out


def advance(conn: sqlite3.Connection, name: str, state: str, events: Sequence[NewEvent],
            matches: Sequence[MatchRecord], now: datetime, endpoints: Sequence[Endpoint],
            prune: bool, clock: IdClock) -> list[str]:
    """A follower's step in the caller's transaction: events, history, cursor."""
    routes = _routes(conn, {m.monitor_id for m in matches})
    ids = accept(conn, events, now, endpoints, prune, clock,
                 [routes[m.monitor_id] for m in matches])
    rows, by_address = [], []
    for ref, m in zip(ids, matches, strict=True):
        n = row_id(ref, "evt_")
        addresses = [a.lower() for a in m.addresses]
        rows.append((n, m.monitor_id, m.kind, m.tx_hash.lower(), " ".join(addresses),
                     m.block_number))
        by_address += [(m.monitor_id, a, n) for a in addresses]
    # an event already known (its idempotency key) keeps the one history row it has
    conn.executemany("INSERT OR IGNORE INTO matches VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.executemany("INSERT OR IGNORE INTO match_addresses VALUES (?, ?, ?)", by_address)
    conn.execute("INSERT INTO cursors VALUES (?, ?, ?) ON CONFLICT (name)"
                 " DO UPDATE SET state = excluded.state, saved_at = excluded.saved_at",
                 (name, state, to_us(now)))
    return ids


def _monitor_event(row: Sequence[Any]) -> MonitorEvent:
    match = MatchRecord(row[1], row[2], row[3], tuple(row[4].split()), row[5])
    return MonitorEvent(match, event_ref(row[0]), row[6], _at(row[7]), row[8])


def monitor_events(conn: sqlite3.Connection, monitor_id: str, tx_hash: str | None,
                   address: str | None, limit: int) -> list[MonitorEvent]:
    if limit <= 0:
        return []  # SQLite reads a negative LIMIT as "no limit"
    joined = " CROSS JOIN events e ON e.id = m.event_id"
    params: list[Any] = [monitor_id]
    order = "m.event_id"
    if tx_hash is not None:  # a transaction has few rows: its index leads
        query = f"SELECT {_MATCH} FROM matches m{joined} WHERE m.monitor_id = ? AND m.tx_hash = ?"
        params.append(tx_hash.lower())
        if address is not None:
            query += (" AND EXISTS (SELECT 1 FROM match_addresses a WHERE a.monitor_id ="
                      " m.monitor_id AND a.address = ? AND a.event_id = m.event_id)")
            params.append(address.lower())
    elif address is not None:
        query = (f"SELECT {_MATCH} FROM match_addresses a CROSS JOIN matches m"
                 f" ON m.event_id = a.event_id{joined}"
                 " WHERE a.monitor_id = ? AND a.address = ?")
        params.append(address.lower())
        order = "a.event_id"  # the key's own order: no sort
    else:
        query = f"SELECT {_MATCH} FROM matches m{joined} WHERE m.monitor_id = ?"
    rows = conn.execute(f"{query} ORDER BY {order} DESC LIMIT ?", (*params, limit))
    return [_monitor_event(r) for r in rows]
