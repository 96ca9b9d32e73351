"""Endpoints and the delivery queue of the SQLite backend: endpoint rows, then claiming (with
leases), settling, releasing, replaying, the queue's stats and an endpoint's deliveries. Plain
functions of a connection, called by `store` inside its transactions.
"""
# SQL text here is assembled only from constants of this module, `events` and `schema`; values
# always travel as `?` parameters, so the string-built-query warning does not apply.
# ruff: noqa: S608

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from service.models import Claim, Delivery, DeliveryState, Endpoint, Event, QueueStats
from service.store import Settled
from service.store.sqlite.events import (
    FANOUT_COLUMNS,
    make_deliveries,
    materialise,
    pending_delivery,
    unpack_offsets,
)
from service.store.sqlite.schema import (
    ACTIVE,
    ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS,
    ENDPOINT_COLUMNS,
    EVENT_COLUMNS,
    READY,
    delivery_from_row,
    delivery_ref,
    endpoint_from_row,
    event_ref,
    insert_rows,
    row_id,
    update_ids,
)
from service.store.times import from_us, to_us, to_us_or_none


# --- endpoints ---------------------------------------------------------------------------
def put_endpoint(conn: sqlite3.Connection, ep: Endpoint) -> None:
    updates = ", ".join(f"{c} = excluded.{c}" for c in ENDPOINT_COLUMNS.split(", ")[1:])
    # an upsert, not INSERT OR REPLACE, keeps the row (and so the listing order) stable
    conn.execute(f"INSERT INTO endpoints ({ENDPOINT_COLUMNS})"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                 f" ON CONFLICT (id) DO UPDATE SET {updates}",
                 (ep.id, ep.url, ep.secret, json.dumps(list(ep.event_types)), ep.rate_limit,
                  ep.description, int(ep.disabled), ep.disabled_reason,
                  to_us_or_none(ep.created_at), to_us_or_none(ep.failing_since)))


def get_endpoint(conn: sqlite3.Connection, endpoint_id: str) -> Endpoint | None:
    row = conn.execute(f"SELECT {ENDPOINT_COLUMNS} FROM endpoints WHERE id = ?",
                       (endpoint_id,)).fetchone()
    return None if row is None else endpoint_from_row(row)


def list_endpoints(conn: sqlite3.Connection) -> list[Endpoint]:
    rows = conn.execute(f"SELECT {ENDPOINT_COLUMNS} FROM endpoints ORDER BY rowid")
    return [endpoint_from_row(r) for r in rows]


def delete_endpoint(conn: sqlite3.Connection, endpoint_id: str) -> bool:
    if conn.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,)).rowcount == 0:
        return False
    for row in conn.execute(f"SELECT {FANOUT_COLUMNS} FROM fanouts WHERE endpoint_id = ?"
                            " AND done < total", (endpoint_id,)).fetchall():
        make_deliveries(conn, row, row[5], "dead")  # rare: made now, and dead at once
    conn.execute(f"UPDATE deliveries SET state = 'dead', next_attempt_at = NULL,"
                 f" lease_until = NULL WHERE endpoint_id = ? AND {ACTIVE}", (endpoint_id,))
    return True


# --- queue -------------------------------------------------------------------------------
# CROSS JOIN pins deliveries as the outer loop, so the ready index drives the claim; ACTIVE
# and READY stay unqualified (their columns are only in deliveries) to match the index text.
KNOWN_ENDPOINTS = 20_000  # endpoints a claimer keeps built (`claim`'s `known`) before it forgets
CLAIM_ROUNDS = 8  # selections per claim at most while busy endpoints' deliveries are put off
_CLAIMED_ENDPOINT = ", ".join("p." + c for c in ENDPOINT_COLUMNS.split(", "))
CLAIM_SQL = f"""
SELECT {DELIVERY_COLUMNS}, {EVENT_COLUMNS}, {_CLAIMED_ENDPOINT}
FROM deliveries d CROSS JOIN events e ON e.id = d.event_id
     CROSS JOIN endpoints p ON p.id = d.endpoint_id
WHERE {ACTIVE} AND {READY} <= ? AND p.disabled = 0
ORDER BY {READY}, d.created_at, d.rowid LIMIT ?
"""


def claim(conn: sqlite3.Connection, limit: int, now: datetime, lease: float,
          put_off: Mapping[str, datetime] | None = None,
          known: dict[tuple[Any, ...], Endpoint] | None = None) -> list[Claim]:
    """`known`: endpoints built from their rows by earlier claims, kept by the caller: an
    endpoint's row is converted once, not once per claim (with thousands of endpoints, a
    claim holds a hundred different ones). Keyed by the whole row, so a changed endpoint
    is built anew."""
    if limit <= 0:
        return []  # SQLite reads a negative LIMIT as "no limit"
    until = to_us(now) + int(lease * 1_000_000)
    later = {ep: to_us(at) for ep, at in (put_off or {}).items()}
    rows: list[Any] = []
    for _ in range(CLAIM_ROUNDS):  # a busy endpoint's deliveries do not fill the claim
        want = limit - len(rows)
        materialise(conn, want, later.keys())
        found = conn.execute(CLAIM_SQL, (to_us(now), want)).fetchall()
        taken = [r for r in found if r[2] not in later]
        # put off: a lease nobody holds, ending when the endpoint should have room
        update_ids(conn, "UPDATE deliveries SET lease_until = ?", (until,),
                   [r[0] for r in taken])
        conn.executemany("UPDATE deliveries SET lease_until = ? WHERE id = ?",
                         [(later[r[2]], r[0]) for r in found if r[2] in later])
        rows += taken
        if len(taken) == len(found) or len(found) < want:
            break
    # the lease's end doubles as its token: a later claim always ends later
    token = str(until)
    endpoints = {} if known is None else known
    if len(endpoints) > KNOWN_ENDPOINTS:
        endpoints.clear()
    leased_until = from_us(until)
    # a claim's rows share a few times (a fan-out's deliveries, an event's acceptance): each
    # is converted once, and the rows are built here rather than by `delivery_from_row` and
    # `event_from_row` (this runs for every delivery: they cost 7 µs a row, this 2)
    times: dict[int, datetime] = {}
    claims = []
    for r in rows:
        ep_row = r[13:]
        ep = endpoints.get(ep_row)
        if ep is None:
            ep = endpoints[ep_row] = endpoint_from_row(ep_row)
        due, created, accepted = r[5], r[6], r[11]
        for us in (due, created, accepted):
            if us is not None and us not in times:
                times[us] = from_us(us)
        accepted_at = times[accepted]
        claims.append(Claim(
            Delivery(delivery_ref(r[0]), event_ref(r[1]), r[2], _STATES[r[3]], r[4],
                     None if due is None else times[due], times[created], accepted_at),
            Event(event_ref(r[8]), r[9], r[10], accepted_at, r[12]),
            ep, token, leased_until))
    return claims


_STATES = {s.value: s for s in DeliveryState}


# Only the current lease holder moves the state: a worker whose lease ran out and was claimed
# again must not overwrite the newer outcome (its attempt is still recorded and counted).
# SET expressions all see the row as it was, so each CASE tests the old lease.
# The outcomes of a batch are grouped by (lease, state, due time), which every success of one
# claim shares, and each group is one statement over its ids (`update_ids`).
_SETTLE = """UPDATE deliveries SET attempts = attempts + 1,
    state = CASE WHEN lease_until = ?1 THEN ?2 ELSE state END,
    next_attempt_at = CASE WHEN lease_until = ?1 THEN ?3 ELSE next_attempt_at END,
    lease_until = CASE WHEN lease_until = ?1 THEN NULL ELSE lease_until END"""


def settle(conn: sqlite3.Connection, outcomes: Sequence[Settled]) -> None:
    attempts = []
    updates: dict[tuple[int, str, int | None], list[int | None]] = {}  # (lease, state, due)
    streaks: dict[str, tuple[int | None, str]] = {}  # endpoint: (failing since, disable)
    # an endpoint answers with the same few headers every time: each set is encoded once
    encoded: dict[tuple[tuple[str, str], ...], str] = {}
    for c, attempt, verdict in outcomes:
        did = row_id(c.delivery.id, "msg_")
        kept = tuple(attempt.response_headers.items())
        headers = encoded.get(kept)
        if headers is None:
            headers = encoded[kept] = json.dumps(dict(kept))
        attempts.append((did, attempt.number, to_us(attempt.at), attempt.duration,
                         attempt.status_code, attempt.error, headers, attempt.response_body))
        due = None
        if verdict.state in (DeliveryState.PENDING, DeliveryState.RETRYING):
            due = to_us(verdict.next_attempt_at or attempt.at)
        group = (int(c.lease_token), verdict.state.value, due)
        ids = updates.get(group)
        if ids is None:
            ids = updates[group] = []
        ids.append(did)
        # in order, as one settle after another would: the last verdict sets the streak,
        # and a disabling one is never undone by a later one in the same batch
        reason = verdict.disable_endpoint or streaks.get(c.endpoint.id, (None, ""))[1]
        streaks[c.endpoint.id] = (to_us_or_none(verdict.endpoint_failing_since), reason)
    insert_rows(conn, f"INSERT INTO attempts ({ATTEMPT_COLUMNS})", "(?, ?, ?, ?, ?, ?, ?, ?)",
                attempts)
    for group, ids in updates.items():
        update_ids(conn, _SETTLE, group, ids)
    disabling = [(failing, reason, endpoint_id)
                 for endpoint_id, (failing, reason) in streaks.items() if reason]
    if disabling:
        conn.executemany("UPDATE endpoints SET failing_since = ?, disabled = 1,"
                         " disabled_reason = ? WHERE id = ?", disabling)
    # one statement for every endpoint of the batch (a batch may hold a hundred); the guard
    # spares a page write per success when nothing changes
    conn.executemany("UPDATE endpoints SET failing_since = ? WHERE id = ?"
                     " AND failing_since IS NOT ?",
                     [(failing, endpoint_id, failing)
                      for endpoint_id, (failing, reason) in streaks.items() if not reason])


def release(conn: sqlite3.Connection, claims: Sequence[Claim],
            not_before: Sequence[datetime] | None) -> None:
    # put off: a lease nobody holds, ending then (claims order by the later of the two times)
    ends = [None] * len(claims) if not_before is None else [to_us(t) for t in not_before]
    conn.executemany("UPDATE deliveries SET lease_until = ? WHERE id = ? AND lease_until = ?",
                     [(end, row_id(c.delivery.id, "msg_"), int(c.lease_token))
                      for c, end in zip(claims, ends, strict=True)])


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
    out = [delivery_from_row(r) for r in conn.execute(
        f"SELECT {DELIVERY_COLUMNS} FROM deliveries d JOIN events e ON e.id = d.event_id"
        " WHERE d.endpoint_id = ?", (endpoint_id,))]
    for _, _, first, packed, first_delivery, total, done, created in conn.execute(
            f"SELECT {FANOUT_COLUMNS} FROM fanouts WHERE endpoint_id = ? AND done < total",
            (endpoint_id,)):
        offsets = unpack_offsets(packed, total)
        out += [pending_delivery(first_delivery + k, first + offsets[k], endpoint_id, created)
                for k in range(done, total)]
    out.sort(key=lambda d: (d.created_at, d.id))
    return out
