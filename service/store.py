"""The store-and-queue interface both backends implement (`sqlite_store`, `redis_store`).

Durability contract, which the shared contract test suite checks for each backend:
- `accept` returns only after the events, their idempotency keys and their deliveries are
  durable; a crash after it returned loses nothing.
- A claimed delivery is leased, not removed: if its worker dies before `settle`, it becomes
  claimable again (SQLite: at the next start, at once; Redis: after `lease` seconds idle, by
  any process). Deliveries are therefore at-least-once; the webhook-id makes them
  recognisable to the receiver.
- `settle` records the attempt and the verdict atomically.
Every method raises `service.StoreError` when the backend fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from service.models import (
    Attempt,
    Claim,
    Delivery,
    Endpoint,
    EventView,
    NewEvent,
    QueueStats,
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
    async def claim(self, limit: int, now: datetime, lease: float) -> list[Claim]:
        """Up to `limit` deliveries that are due, leased to the caller for `lease` seconds,
        oldest due first. Deliveries of disabled or deleted endpoints are never returned."""

    async def settle(self, claim: Claim, attempt: Attempt, verdict: Verdict) -> None:
        """Record the attempt and apply the verdict (new state, next time, endpoint
        disabling or failure streak), releasing the lease."""

    async def settle_many(self, outcomes: Sequence[Settled]) -> None:
        """`settle` for several deliveries in one write (one transaction or one script
        run); the dispatcher records attempts this way, as they finish."""

    async def release(self, claims: Sequence[Claim]) -> None:
        """Give leased deliveries back untouched (graceful shutdown): due again at once."""

    async def replay(self, endpoint_id: str, since: datetime | None,
                     until: datetime | None, now: datetime) -> int:
        """Make the endpoint's dead deliveries (created within [since, until]) pending and
        due now; returns how many."""

    async def stats(self, now: datetime) -> QueueStats: ...

    async def deliveries_of(self, endpoint_id: str) -> list[Delivery]:
        """Every delivery of the endpoint (for tests and the API's listing)."""
