"""Accepting events into the SQLite backend: event rows, idempotency keys and fan-out rows,
which `materialise` turns into delivery rows as they are claimed (see `schema`), and reading
one event with its deliveries. Plain functions of a connection, run by `store`.
"""
# SQL text here is assembled only from constants of this module and `schema`; values
# always travel as `?` parameters, so the string-built-query warning does not apply.
# ruff: noqa: S608

from __future__ import annotations

import bisect
import sqlite3
from array import array
from collections.abc import Collection, Sequence
from datetime import datetime
from itertools import chain, repeat
from typing import Any

from service.models import Attempt, Delivery, DeliveryState, Endpoint, EventView, NewEvent
from service.store import IDEMPOTENCY_WINDOW
from service.store.sqlite.schema import (
    ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS,
    EVENT_COLUMNS,
    IdClock,
    attempt_from_row,
    delivery_from_row,
    delivery_ref,
    event_from_row,
    event_ref,
    event_refs,
    insert_rows,
    row_id,
    update_ids,
)
from service.store.times import from_us, to_us

_WINDOW_US = int(IDEMPOTENCY_WINDOW * 1_000_000)


class Routing:
    """The endpoints fan-out reads, indexed by the event types they want, built when they
    change: an accept asks for each type once and gets its endpoints without looking at
    the others (5,000 endpoints each wanting its own type made every new type in a batch
    ask all 5,000)."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._every: list[tuple[int, Endpoint]] = []  # (listing position, endpoint)
        self._by_type: dict[str, list[tuple[int, Endpoint]]] = {}
        for i, ep in enumerate(endpoints):
            if ep.disabled:
                continue
            if not ep.event_types:
                self._every.append((i, ep))
            for kind in dict.fromkeys(ep.event_types):
                self._by_type.setdefault(kind, []).append((i, ep))

    def wanting(self, event_type: str) -> list[Endpoint]:
        """The endpoints that want `event_type`, in listing order."""
        typed = self._by_type.get(event_type, [])
        if not self._every or not typed:
            return [ep for _, ep in typed or self._every]
        return [ep for _, ep in sorted(self._every + typed, key=lambda x: x[0])]


def accept(conn: sqlite3.Connection, events: Sequence[NewEvent], now: datetime,
           endpoints: Routing, prune: bool, clock: IdClock,
           routes: Sequence[str] | None = None) -> list[str]:
    """Store the events and their fan-out. `routes`, when given, names for each event the
    one endpoint it may go to ('' for none) in place of every endpoint that wants it."""
    return accept_calls(conn, [(events, now)], endpoints, prune, clock, routes)[0]


def accept_calls(conn: sqlite3.Connection, calls: Sequence[tuple[Sequence[NewEvent], datetime]],
                 endpoints: Routing, prune: bool, clock: IdClock,
                 routes: Sequence[str] | None = None) -> list[list[str]]:
    """`accept` for several callers' events at once (the accepts one group commit gathered):
    one statement per table and one fan-out row per endpoint for all of them, the ids
    returned per call. `routes`, when given, runs over the calls' events in order.

    A call without idempotency keys or routes (the common batch) is stored without a
    Python step per event beyond building its row."""
    ats = [to_us(now) for _, now in calls]
    if prune:
        conn.execute("DELETE FROM idempotency WHERE expires_at <= ?", (max(ats),))
    out: list[list[str]] = []
    fresh: dict[str, int] = {}  # keys first seen in these calls
    event_rows: list[tuple[int, str, str, int, str | None]] = []
    key_rows: list[tuple[str, int, int]] = []
    kinds: list[str] = []  # the type of each event row, in order
    kept: list[str] = []  # with routes: the route of each event row
    first = n = clock.take(sum(len(events) for events, _ in calls))
    i = 0  # position in `routes`
    for (events, _), at in zip(calls, ats, strict=True):
        if routes is None and len(events) == 1 and events[0].idempotency_key is None:
            ev = events[0]  # a single-event request: a group commit gathers dozens of these
            event_rows.append((n, ev.type, ev.serialised(), at, None))
            kinds.append(ev.type)
            out.append([event_ref(n)])
            n += 1
            continue
        if routes is None and all(ev.idempotency_key is None for ev in events):
            k = len(events)
            types = [ev.type for ev in events]
            event_rows += zip(range(n, n + k), types, [ev.serialised() for ev in events],
                              repeat(at), repeat(None))
            kinds += types
            out.append(event_refs(n, k))
            n += k
            continue
        ids: list[str] = []
        for ev in events:
            key = ev.idempotency_key
            route = None if routes is None else routes[i]
            i += 1
            if key is not None:
                seen = fresh.get(key) or _known_key(conn, key, at)
                if seen is not None:
                    ids.append(event_ref(seen))
                    continue
                fresh[key] = n
                key_rows.append((key, n, at + _WINDOW_US))
            ids.append(event_ref(n))
            event_rows.append((n, ev.type, ev.serialised(), at, key))
            kinds.append(ev.type)
            if route is not None:
                kept.append(route)
            n += 1
        out.append(ids)
    insert_rows(conn, "INSERT INTO events", "(?, ?, ?, ?, ?)", event_rows)
    if key_rows:
        conn.executemany("INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?)", key_rows)
    fanouts = []
    for endpoint_id, offsets in _fan_out(kinds, kept if routes is not None else None,
                                         endpoints):
        total = len(offsets)  # offsets increase, so the last one tells whether all are there
        packed = None if offsets[-1] == total - 1 else array("I", offsets).tobytes()
        fanouts.append((endpoint_id, first, n - 1, packed, clock.take(total), total, ats[0]))
    insert_rows(conn, "INSERT INTO fanouts (endpoint_id, first_event, last_event, offsets,"
                " first_delivery, total, done, created_at)", "(?, ?, ?, ?, ?, ?, 0, ?)", fanouts)
    return out


def _fan_out(kinds: Sequence[str], routes: Sequence[str] | None,
             endpoints: Routing) -> list[tuple[str, Sequence[int]]]:
    """(endpoint, offsets of the event rows it gets, increasing) for every endpoint that gets
    any; event rows grouped by type (and route) first, so each group asks `endpoints` once."""
    groups: dict[tuple[str, str | None], Sequence[int]]
    if routes is None and len(set(kinds)) == 1:  # a batch of one type: no step per event
        groups = {(kinds[0], None): range(len(kinds))}
    else:
        lists: dict[tuple[str, str | None], list[int]] = {}
        for offset, key in enumerate(zip(kinds, routes or repeat(None), strict=False)):
            members = lists.get(key)
            if members is None:
                members = lists[key] = []
            members.append(offset)
        groups = dict(lists)
    wanted: dict[str, list[Sequence[int]]] = {}
    for (kind, route), offsets in groups.items():
        for ep in endpoints.wanting(kind):
            if route is None or ep.id == route:
                wanted.setdefault(ep.id, []).append(offsets)
    return [(endpoint_id, parts[0] if len(parts) == 1 else sorted(chain.from_iterable(parts)))
            for endpoint_id, parts in wanted.items()]


# The columns of a fan-out row as `make_deliveries` and the readers of open fan-outs take them.
FANOUT_COLUMNS = ("id, endpoint_id, first_event, offsets, first_delivery, total, done,"
                  " created_at")
_MAKE = ("INSERT INTO deliveries (id, event_id, endpoint_id, state, attempts, next_attempt_at,"
         " created_at)", "(?, ?, ?, ?, 0, ?, ?)")  # `insert_rows`' head and row


def unpack_offsets(packed: bytes | None, total: int) -> Sequence[int]:
    """A fan-out row's event offsets: its `offsets` blob, or all `total` when it is NULL."""
    return range(total) if packed is None else array("I", packed)


def make_deliveries(conn: sqlite3.Connection, row: Sequence[Any], upto: int,
                    state: str = "pending") -> None:
    """Delivery rows done..upto-1 of fan-out `row` (columns as in FANOUT_COLUMNS)."""
    insert_rows(conn, *_MAKE, _delivery_rows(row, upto, state))
    conn.execute("UPDATE fanouts SET done = ? WHERE id = ?", (upto, row[0]))


def _delivery_rows(row: Sequence[Any], upto: int,
                   state: str = "pending") -> list[tuple[Any, ...]]:
    _, endpoint_id, first, packed, first_delivery, total, done, created = row
    offsets = unpack_offsets(packed, total)
    due = created if state == "pending" else None
    return [(first_delivery + k, first + offsets[k], endpoint_id, state, due, created)
            for k in range(done, upto)]


def materialise(conn: sqlite3.Connection, budget: int,
                busy: Collection[str] = ()) -> None:
    """Turn up to `budget` of the oldest not-yet-made deliveries into rows, except those of
    `busy` endpoints (their work waits unmade, so it costs nothing until they have room,
    and it cannot stand in the way of other endpoints' work). Two statements whatever the
    number of fan-out rows: with thousands of endpoints, a claim's rows come from as many."""
    if busy:
        rows = []
        for (endpoint_id,) in conn.execute("SELECT id FROM endpoints WHERE disabled = 0"):
            if endpoint_id not in busy:  # an index walk of its own open fan-outs only
                rows += conn.execute(f"SELECT {FANOUT_COLUMNS} FROM fanouts WHERE done < total AND"
                                     " endpoint_id = ? ORDER BY id LIMIT ?",
                                     (endpoint_id, budget)).fetchall()
        rows.sort()
    else:
        rows = conn.execute(f"SELECT {FANOUT_COLUMNS} FROM fanouts WHERE done < total"
                            " ORDER BY id LIMIT ?", (budget,)).fetchall()
    made: list[tuple[Any, ...]] = []
    moved: dict[int, list[int]] = {}  # done count: the fan-out rows it is now for
    for row in rows:
        if budget <= 0:
            break
        upto = min(row[5], row[6] + budget)
        made += _delivery_rows(row, upto)
        ids = moved.get(upto)
        if ids is None:
            ids = moved[upto] = []
        ids.append(row[0])
        budget -= upto - row[6]
    if moved:
        insert_rows(conn, *_MAKE, made)
        # with thousands of endpoints a claim finishes a hundred fan-out rows of one event
        # each: one statement for all those, as `done = 1` for each
        for upto, ids in moved.items():
            update_ids(conn, "UPDATE fanouts SET done = ?", (upto,), ids)


def _unmade(conn: sqlite3.Connection, event: int) -> list[tuple[int, str, int, bool]]:
    """The deliveries of one event by fan-out: (delivery id, endpoint, created, made)."""
    (base,) = conn.execute("SELECT max(first_event) FROM fanouts WHERE first_event <= ?",
                           (event,)).fetchone()
    if base is None:
        return []
    out = []
    for _, endpoint_id, first, packed, first_delivery, total, done, created in conn.execute(
            f"SELECT {FANOUT_COLUMNS} FROM fanouts WHERE first_event = ? AND last_event >= ?"
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


def pending_delivery(delivery: int, event: int, endpoint_id: str, created: int) -> Delivery:
    """A delivery that has no row yet (still in its fan-out row): pending, never tried."""
    at = from_us(created)
    return Delivery(delivery_ref(delivery), event_ref(event), endpoint_id,
                    DeliveryState.PENDING, 0, at, at, at)


def _known_key(conn: sqlite3.Connection, key: str, at: int) -> int | None:
    row = conn.execute("SELECT event_id FROM idempotency WHERE key = ? AND expires_at > ?",
                       (key, at)).fetchone()
    return None if row is None else int(row[0])


def get_event(conn: sqlite3.Connection, ref: str) -> EventView | None:
    n = row_id(ref, "evt_")
    row = None if n is None else conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM events e WHERE e.id = ?", (n,)).fetchone()
    if row is None or n is None:
        return None
    fanned = _unmade(conn, n)
    made = [d for d, _, _, is_made in fanned if is_made]
    marks = ", ".join("?" * len(made))
    attempts: dict[int, list[Attempt]] = {}
    rows: dict[int, Delivery] = {}
    if made:
        for a in conn.execute(f"SELECT {ATTEMPT_COLUMNS} FROM attempts"
                              f" WHERE delivery_id IN ({marks}) ORDER BY number, rowid", made):
            attempts.setdefault(a[0], []).append(attempt_from_row(a))
        rows = {r[0]: delivery_from_row(r) for r in conn.execute(
            f"SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id"
            f" WHERE d.id IN ({marks})", made)}
    views = []
    for did, endpoint_id, created, is_made in fanned:
        delivery = rows.get(did) if is_made else pending_delivery(did, n, endpoint_id, created)
        if delivery is not None:
            views.append((delivery, tuple(attempts.get(did, ()))))
    return EventView(event_from_row(row), tuple(views))
