"""The store-and-queue interface both backends implement (`sqlite`, `redis`).

Durability contract, which the shared contract test suite checks for each backend:
- `accept` returns only after the events, their idempotency keys and their deliveries are
  durable; a crash after it returned loses nothing.
- A claimed delivery is leased, not removed: if its worker dies before `settle`, it becomes
  claimable again (SQLite: at the next start, at once; Redis: after `lease` seconds idle, by
  any process). Deliveries are therefore at-least-once; the webhook-id makes them
  recognisable to the receiver.
- `settle` records the attempt and the verdict atomically.
- `advance` (a chain follower's step) makes its events durable no later than its cursor: a
  crash never leaves a saved cursor past events that were not enqueued. Both backends do
  the whole step atomically (SQLite: one transaction; Redis: one script).
Every method raises `service.StoreError` when the backend fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from service.models import (
    Attempt,
    Claim,
    Delivery,
    Endpoint,
    EventView,
    MatchRecord,
    Monitor,
    MonitorEvent,
    NewEvent,
    QueueStats,
    Stored,
    Verdict,
)

Settled = tuple[Claim, Attempt, Verdict]  # a delivery attempt made, with its verdict
IDEMPOTENCY_WINDOW = 24 * 3600.0  # seconds an idempotency key keeps answering the same id


class Store(Protocol):
    async def open(self) -> None:
        """Connect / create the schema, and make deliveries that were in flight when a
        previous process died claimable again."""

    async def close(self) -> None: ...

    async def ping(self) -> bool:
        """True when the backend answers (for /readyz)."""

    # --- endpoints ---------------------------------------------------------------------
    async def put_endpoint(self, endpoint: Endpoint) -> None:
        """Create or replace the endpoint with this id."""

    async def get_endpoint(self, endpoint_id: str) -> Endpoint | None: ...

    async def list_endpoints(self) -> list[Endpoint]: ...

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        """Remove it and its active deliveries (they become dead); False when unknown."""

    # --- events ------------------------------------------------------------------------
    async def accept(self, events: Sequence[NewEvent], now: datetime) -> list[str]:
        """Store the events and fan each out to every endpoint that wants its type (one
        delivery each, due now). Returns the event ids in order; an event whose
        idempotency key was seen within IDEMPOTENCY_WINDOW gets the first event's id and
        creates nothing. Durable when it returns."""

    async def get_event(self, event_id: str) -> EventView | None: ...

    # --- queue -------------------------------------------------------------------------
    async def claim(self, limit: int, now: datetime, lease: float,
                    put_off: Mapping[str, datetime] | None = None) -> list[Claim]:
        """Up to `limit` deliveries that are due, leased to the caller for `lease` seconds,
        oldest due first. Deliveries of disabled or deleted endpoints are never returned.
        Due deliveries of the endpoints in `put_off` (busy ones) are not returned either,
        nor do they count against `limit` (within a bounded amount of work per call): the
        store leaves them waiting or makes them due at the time given, whichever is
        cheaper for it; the caller names an endpoint for as long as it is busy."""

    async def settle(self, claim: Claim, attempt: Attempt, verdict: Verdict) -> None:
        """Record the attempt and apply the verdict (new state, next time, endpoint
        disabling or failure streak), releasing the lease."""

    async def settle_many(self, outcomes: Sequence[Settled]) -> None:
        """`settle` for several deliveries in one write (one transaction or one script
        run); the dispatcher records attempts this way, as they finish."""

    async def release(self, claims: Sequence[Claim],
                      not_before: Sequence[datetime] | None = None) -> None:
        """Give leased deliveries back untouched: due again at once (graceful shutdown), or
        each not before its `not_before` (aligned with `claims`: work for an endpoint that
        is busy for a while, put off until it can take it). A claim whose lease was taken
        over meanwhile is left alone."""

    async def replay(self, endpoint_id: str, since: datetime | None,
                     until: datetime | None, now: datetime) -> int:
        """Make the endpoint's dead deliveries (created within [since, until]) pending and
        due now; returns how many."""

    async def stats(self, now: datetime) -> QueueStats: ...

    async def deliveries_of(self, endpoint_id: str) -> list[Delivery]:
        """Every delivery of the endpoint (for tests and the API's listing)."""

    # --- address monitors and chain followers --------------------------------------------
    async def put_monitor(self, monitor: Monitor) -> None:
        """Create or replace the monitor with this id (its listing position stays), and
        bump `monitors_version`."""

    async def get_monitor(self, monitor_id: str) -> Monitor | None: ...

    async def list_monitors(self, chain: str | None = None) -> list[Monitor]:
        """Every monitor (of `chain`, when given) in creation order, addresses included:
        followers call it when `monitors_version` moved, not per block."""

    async def replace_monitor(self, monitor: Monitor) -> bool:
        """Compare-and-set, for read-modify-write changes from processes sharing a store:
        write `monitor` over the stored monitor with its id only if that one is still at
        `monitor.revision` (nobody wrote it since it was read). False, and nothing written,
        when it was changed or deleted meanwhile. Bumps `monitors_version` like
        `put_monitor`; every write moves the stored revision on."""

    async def delete_monitor(self, monitor_id: str) -> bool:
        """Remove it and bump `monitors_version`; False (and no bump) when unknown. Its
        history stays with the events it belongs to."""

    async def monitors_version(self) -> int:
        """A counter that grows with every put_monitor and every delete_monitor that
        removed something, durable like the monitors: a follower re-reads the monitors
        only when it moved. 0 before the first change."""

    async def get_cursor(self, name: str) -> dict[str, Any] | None:
        """The JSON state the follower `name` last saved with `advance`; None when never."""

    async def advance(self, name: str, state: Mapping[str, Any], events: Sequence[NewEvent],
                      matches: Sequence[MatchRecord], now: datetime, *,
                      holder: str | None = None) -> list[Stored]:
        """A follower's step, atomically: accept `events` like `accept` (ids returned in
        order, each with whether it is new; a known idempotency key answers the first
        event's id, not new, and enqueues nothing),
        record `matches[i]` in its monitor's history as the match of the event `events[i]`
        became (one history entry per event: a re-processed block adds none), and save
        `state` (a JSON object) as the cursor `name`.

        Unlike `accept`, an event goes only to the endpoint of its match's monitor, and only
        while that monitor exists and is enabled and the endpoint wants the event's type;
        other endpoints never see another customer's transfers. The event and its history
        entry are stored either way. Durable when it returns. ValueError when `events` and
        `matches` differ in length.

        With `holder`, the write is fenced: it happens only while `holder` holds the lease on
        the cursor (`hold_cursor`), checked in the same transaction; otherwise `CursorTaken`
        is raised and nothing is written."""

    async def hold_cursor(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the lease on the cursor `name` for `ttl` seconds: True when `holder`
        holds it now (it was free, ran out, or was its own), False while another holder's
        lease runs. Processes sharing a store use it so that one of them follows a chain."""

    async def let_go_cursor(self, name: str, holder: str) -> None:
        """End `holder`'s lease on `name` now (a clean stop), so another process takes over
        without waiting for it to run out; nothing when another holder has it."""

    async def monitor_events(self, monitor_id: str, tx_hash: str | None = None,
                             address: str | None = None, limit: int = 100,
                             before: str | None = None) -> list[MonitorEvent]:
        """The monitor's history, newest first, at most `limit` entries: only those of
        transaction `tx_hash` and/or involving the watched `address`, when given (both
        compared case-insensitively), and only those older than the entry of event
        `before` when given (the next page after a page that ended with it). ValueError
        when `before` is not an event of this monitor's history."""

    async def endpoint_monitors(self, endpoint_id: str, limit: int = 100) -> list[str]:
        """Ids of the monitors whose events go to `endpoint_id`, oldest first, at most
        `limit` (an endpoint with monitors is not deleted under them)."""
