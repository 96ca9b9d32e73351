"""Tables of the SQLite backend: the DDL, its version and upgrade, and the ids, column lists
and row conversions shared by the statement modules `events`, `queue` and `monitors`.

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

The schema's version is `PRAGMA user_version` (VERSION): opening a file of an UPGRADABLE
version (the previous ones) upgrades it, any other version is refused with `StoreError`
(`check_version`), so a file a newer build wrote is never misread.

The statement modules hold plain functions of a connection, called by `store` inside its
transactions; times are integer microseconds since the epoch (`service.store.times`: exact
round trips, cheap comparisons and indexes).
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any

from core.formats import FormatError, sqlite_version
from service import StoreError
from service.models import Attempt, Delivery, DeliveryState, Endpoint, Event
from service.store.times import from_us, from_us_or_none

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
CREATE INDEX IF NOT EXISTS fanouts_endpoint_open ON fanouts (endpoint_id, id)
    WHERE done < total;
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

# Column lists, in the order the `*_from_row` functions below read them. EVENT_COLUMNS and
# DELIVERY_COLUMNS name the tables `e` (events) and `d` (deliveries joined to their event).
ENDPOINT_COLUMNS = ("id, url, secret, event_types, rate_limit, description, disabled,"
                    " disabled_reason, created_at, failing_since")
EVENT_COLUMNS = "e.id, e.type, e.data, e.accepted_at, e.idempotency_key"
DELIVERY_COLUMNS = ("d.id, d.event_id, d.endpoint_id, d.state, d.attempts, d.next_attempt_at,"
                    " d.created_at, e.accepted_at")
ATTEMPT_COLUMNS = ("delivery_id, number, at, duration, status_code, error, response_headers,"
                   " response_body")


# Runs of rows one statement writes, largest first: SQLite steps a multi-row INSERT (or an
# UPDATE of `id IN (...)`) once, where `executemany` binds, steps and resets once per row;
# a third less time per row, measured on the event and delivery rows (a few sizes, so
# SQLite's statement cache keeps each text compiled).
RUNS = (64, 16, 4)


@functools.cache
def _values(head: str, row: str, count: int) -> str:
    return f"{head} VALUES " + ", ".join([row] * count)


def insert_rows(conn: sqlite3.Connection, head: str, row: str,
                rows: Sequence[Sequence[Any]]) -> None:
    """`conn.executemany(f"{head} VALUES {row}", rows)`, in order, the rows of each run in
    one statement. `row` is the parameter tuple's text, e.g. `(?, ?, 0)`."""
    i, n = 0, len(rows)
    for size in RUNS:
        if n - i >= size:
            sql = _values(head, row, size)
            while n - i >= size:
                conn.execute(sql, tuple(chain.from_iterable(rows[i:i + size])))
                i += size
    if i < n:
        conn.executemany(f"{head} VALUES {row}", rows[i:])


@functools.cache
def _where_in(head: str, count: int) -> str:
    return f"{head} WHERE id IN ({', '.join('?' * count)})"


def update_ids(conn: sqlite3.Connection, head: str, params: Sequence[Any],
               ids: Sequence[int | None]) -> None:
    """`head WHERE id = ?` for each of `ids` with the same `params` (numbered `?1`...
    if `head` uses them more than once), the ids of each run in one statement."""
    i, n = 0, len(ids)
    for size in (*RUNS, 1):
        if n - i >= size:
            sql = _where_in(head, size)
            while n - i >= size:
                conn.execute(sql, (*params, *ids[i:i + size]))
                i += size


def endpoint_from_row(row: Sequence[Any]) -> Endpoint:
    """The endpoint a row of ENDPOINT_COLUMNS holds."""
    return Endpoint(row[0], row[1], row[2], tuple(json.loads(row[3])), row[4], row[5],
                    bool(row[6]), row[7], from_us_or_none(row[8]), from_us_or_none(row[9]))


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


def event_refs(first: int, count: int) -> list[str]:
    """`event_ref` of `count` consecutive ids (a batch's answer, without a call per id)."""
    return [f"evt_{n:016x}" for n in range(first, first + count)]


def delivery_ref(n: int) -> str:
    return f"msg_{n:016x}"


def row_id(text: str, prefix: str) -> int | None:
    """The row id an `evt_`/`msg_` id names; None for anything this store never made."""
    if len(text) != 20 or not text.startswith(prefix):
        return None
    try:
        n = int(text[4:], 16)
    except ValueError:
        return None
    return n if n < 2**63 else None  # past SQLite's INTEGER: never a row of ours


def check_version(conn: sqlite3.Connection, path: Path) -> None:
    """`StoreError` naming the file, the version found and the versions this build knows
    when the file is of none of them (a newer build wrote it): refused, never misread."""
    try:
        sqlite_version(conn, f"the store file {path}", (*UPGRADABLE, VERSION))
    except FormatError as exc:
        raise StoreError(str(exc)) from exc


def upgrade(conn: sqlite3.Connection) -> None:
    """Bring a file of an older version up to VERSION, in one transaction (the caller's
    connection is in autocommit mode)."""
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    steps = "ALTER TABLE monitors ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;" \
        if found == 4 else ""
    conn.executescript(f"BEGIN IMMEDIATE; {steps} {SCHEMA} COMMIT;")


def event_from_row(row: Sequence[Any]) -> Event:
    """The event a row of EVENT_COLUMNS holds."""
    return Event(event_ref(row[0]), row[1], row[2], from_us(row[3]), row[4])


def delivery_from_row(row: Sequence[Any]) -> Delivery:
    """The delivery a row of DELIVERY_COLUMNS holds."""
    return Delivery(delivery_ref(row[0]), event_ref(row[1]), row[2], DeliveryState(row[3]),
                    row[4], from_us_or_none(row[5]),
                    from_us(row[6]), from_us_or_none(row[7]))


def attempt_from_row(row: Sequence[Any]) -> Attempt:
    """The attempt a row of ATTEMPT_COLUMNS holds."""
    return Attempt(row[1], from_us(row[2]), row[3], row[4], row[5], json.loads(row[6]), row[7])
