"""The embedded webhook delivery service: API, store/queue, dispatcher, chain followers.

`service.models` holds the frozen values, `service.store` the one interface both queue
backends implement (SQLite embedded, Redis to scale out). Errors raised by this package:

    ServiceError             base of everything below
    ├── StoreError           the store cannot be reached or answered wrongly
    │   ├── CursorTaken      a follower's write refused: another process holds its cursor
    │   └── NotReplicated    written on the primary, but no replica acknowledged it in time
    ├── UnsafeTarget         an endpoint address is refused by the SSRF guard
    └── DeliveryFailed       a delivery's HTTP exchange got no complete answer
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error the service package raises."""


class StoreError(ServiceError):
    """The store failed; the operation did not happen (or its outcome is unknown)."""


class CursorTaken(StoreError):
    """`advance(holder=...)` refused because `holder` no longer holds the cursor's lease
    (another process follows the chain now); nothing was written."""


class NotReplicated(StoreError):
    """A write reached the Redis primary but no replica acknowledged it in time, so a failover
    could lose it: it was not acknowledged to the client (who retries with the same
    idempotency key); it may still be delivered."""


class UnsafeTarget(ServiceError):
    """A destination the SSRF guard refuses: the message names the address and its kind."""


class DeliveryFailed(ServiceError):
    """No connection, or no complete HTTP answer, for a delivery attempt; the message is the
    attempt's error text."""
