"""Address monitors, follower cursors and match history in the SQLite backend: `advance`
stores a follower's events, their history rows and its cursor in the caller's transaction.
Plain functions of a connection, called by `store`.
"""
# SQL text here is assembled only from this module's constants; values always travel as
# `?` parameters, so the string-built-query warning does not apply.
# ruff: noqa: S608

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from service.models import MatchRecord, Monitor, MonitorEvent, NewEvent, Stored
from service.store.sqlite.events import Routing, accept
from service.store.sqlite.schema import IdClock, event_ref, row_id
from service.store.times import from_us, from_us_or_none, to_us, to_us_or_none

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
                   enabled=bool(row[11]), created_at=from_us_or_none(row[12]), revision=row[13])


def _bump_monitors(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO counters VALUES ('monitors', 1)"
                 " ON CONFLICT (name) DO UPDATE SET value = value + 1")


def _monitor_row(m: Monitor, addresses: bytes) -> tuple[Any, ...]:
    return (m.id, m.chain, m.endpoint_id, addresses, int(m.native), int(m.erc20),
            int(m.erc721), pack_addresses(m.contracts), m.direction, m.confirmations,
            json.dumps(list(m.tags)), int(m.enabled), to_us_or_none(m.created_at))


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
            matches: Sequence[MatchRecord], now: datetime, endpoints: Routing,
            prune: bool, clock: IdClock) -> list[Stored]:
    """A follower's step in the caller's transaction: events, history, cursor."""
    routes = _routes(conn, {m.monitor_id for m in matches})
    before = clock.last  # every id of an event stored now is above it
    ids = accept(conn, events, now, endpoints, prune, clock,
                 [routes[m.monitor_id] for m in matches])
    rows, by_address, stored = [], [], []
    seen: set[int] = set()  # a key twice in one step: its second event is not new
    for ref, m in zip(ids, matches, strict=True):
        n = row_id(ref, "evt_")
        assert n is not None  # our own reference
        stored.append(Stored(ref, n > before and n not in seen))
        seen.add(n)
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
    return stored


def _monitor_event(row: Sequence[Any]) -> MonitorEvent:
    match = MatchRecord(row[1], row[2], row[3], tuple(row[4].split()), row[5])
    return MonitorEvent(match, event_ref(row[0]), row[6], from_us(row[7]), row[8])


def monitor_events(conn: sqlite3.Connection, monitor_id: str, tx_hash: str | None,
                   address: str | None, limit: int, before: str | None) -> list[MonitorEvent]:
    below = None  # entries are in event id order: older ones have smaller ids
    if before is not None:
        below = row_id(before, "evt_")
        if below is None or conn.execute(
                "SELECT 1 FROM matches WHERE event_id = ? AND monitor_id = ?",
                (below, monitor_id)).fetchone() is None:
            raise ValueError(f"{before} is not in the history of {monitor_id}")
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
    if below is not None:
        query += f" AND {order} < ?"
        params.append(below)
    rows = conn.execute(f"{query} ORDER BY {order} DESC LIMIT ?", (*params, limit))
    return [_monitor_event(r) for r in rows]


def endpoint_monitors(conn: sqlite3.Connection, endpoint_id: str, limit: int) -> list[str]:
    rows = conn.execute("SELECT id FROM monitors WHERE endpoint_id = ? ORDER BY rowid LIMIT ?",
                        (endpoint_id, max(0, limit)))
    return [r[0] for r in rows]
