"""Frozen values of the delivery service: endpoints, events, deliveries and attempts.

Times are aware UTC datetimes. Ids are opaque strings with a kind prefix (`ep_`, `evt_`,
`msg_`); a delivery's id is its Standard Webhooks `webhook-id`, the same on every retry.
"""

from __future__ import annotations

import enum
import functools
import itertools
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

_sequence = itertools.count(secrets.randbelow(1 << 16))
_PROCESS = f"{secrets.randbits(48):012x}"  # drawn once: keeps ids of processes apart


def new_id(prefix: str) -> str:
    """A time-ordered id: microseconds, a per-process sequence and 48 random bits drawn
    once per process.

    Ids made later sort later, so the stores' indexes grow at their right edge instead of
    splitting pages all over (5x cheaper inserts in SQLite once a table holds 100k rows).
    Ids are unique, not secret: everything that shows them sits behind the API key.
    """
    return f"{prefix}_{time.time_ns() // 1000:014x}{next(_sequence) & 0xFFFF:04x}{_PROCESS}"


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  # waiting for its first attempt
    RETRYING = "retrying"  # failed at least once, another attempt is scheduled
    DELIVERED = "delivered"  # a 2xx arrived
    DEAD = "dead"  # retries exhausted, or the endpoint is gone (410); replayable


ACTIVE_STATES = frozenset({DeliveryState.PENDING, DeliveryState.RETRYING})
# deliveries per second an endpoint's `rate_limit` may say: the API refuses others, and
# delivery clamps any other value a store holds (an older version let them in)
MIN_RATE_LIMIT = 0.001
MAX_RATE_LIMIT = 100_000.0


@dataclass(frozen=True)
class Endpoint:
    id: str
    url: str
    secret: str  # "whsec_" + base64; never logged
    event_types: tuple[str, ...] = ()  # empty: every type
    rate_limit: float | None = None  # deliveries per second, None: unlimited
    description: str = ""
    disabled: bool = False
    disabled_reason: str = ""
    created_at: datetime | None = None
    failing_since: datetime | None = None  # first failure of the current failure streak

    def wants(self, event_type: str) -> bool:
        return not self.disabled and (not self.event_types or event_type in self.event_types)


class Stored(NamedTuple):
    """An event a follower's `advance` handed the store: its id, and whether it is new (False:
    the queue already had its idempotency key, so nothing was enqueued again)."""

    id: str
    new: bool


class NewEvent(NamedTuple):
    """An event as a client posts it, before the store gives it an id. (A tuple: a batch
    makes a thousand of these per request.)"""

    type: str
    data: Any  # JSON value
    idempotency_key: str | None = None
    data_json: str | None = None  # `data` serialised, when the caller already has it

    def serialised(self) -> str:
        return self.data_json if self.data_json is not None else json.dumps(self.data)


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data_json: str  # the data as the client sent it: delivered byte for byte
    accepted_at: datetime
    idempotency_key: str | None = None

    @functools.cached_property
    def data(self) -> Any:
        return json.loads(self.data_json)


@dataclass(frozen=True)
class Attempt:
    number: int  # 1-based
    at: datetime
    duration: float
    status_code: int | None  # None: no HTTP answer (see error)
    error: str = ""
    response_headers: Mapping[str, str] = field(default_factory=dict)
    response_body: str = ""  # first 4 KB


@dataclass(frozen=True)
class Delivery:
    id: str  # the webhook-id
    event_id: str
    endpoint_id: str
    state: DeliveryState
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    event_accepted_at: datetime | None = None


@dataclass(frozen=True)
class Claim:
    """A delivery leased to one worker: what it needs to make the next attempt."""

    delivery: Delivery
    event: Event
    endpoint: Endpoint
    lease_token: str  # backend-specific proof of the lease (stream entry id, etc.)
    leased_until: datetime | None = None  # after this another worker may claim it


@dataclass(frozen=True)
class Verdict:
    """What to do with a claimed delivery after an attempt (from `service.delivery_state`)."""

    state: DeliveryState
    next_attempt_at: datetime | None = None
    disable_endpoint: str = ""  # non-empty: disable the endpoint with this reason
    endpoint_failing_since: datetime | None = None  # None: the endpoint just succeeded


@dataclass(frozen=True)
class EventView:
    event: Event
    deliveries: tuple[tuple[Delivery, tuple[Attempt, ...]], ...]


@dataclass(frozen=True)
class QueueStats:
    depth: int  # deliveries pending or retrying
    oldest_pending_age: float  # seconds since the oldest active delivery's event was accepted
    disabled_endpoints: int
    due_unclaimed: int | None = None  # due now, claimed by no process (Redis only)
    leased: int | None = None  # claimed by some process, not settled (Redis only)


# --- address-activity monitors (issue: on-chain transfers become webhooks) ------------------
Direction = Literal["in", "out", "all"]
Category = Literal["native", "erc20", "erc721"]


@dataclass(frozen=True)
class Monitor:
    """A customer's watch on addresses of one chain. Addresses and contracts are stored
    lower-case `0x` + 40 hex (matching is case-insensitive); `confirmations` None means the
    chain's default from `[service.chains.NAME]`."""

    id: str
    chain: str
    addresses: frozenset[str]
    endpoint_id: str
    native: bool = True
    erc20: bool = True
    erc721: bool = True
    contracts: frozenset[str] = frozenset()  # empty: any contract
    direction: Direction = "all"
    confirmations: int | None = None
    tags: tuple[str, ...] = ()
    enabled: bool = True
    created_at: datetime | None = None
    # Set by the store: grows with every write, so a read-modify-write (PATCH) can be
    # written back only over what it read (`Store.replace_monitor`). Not part of equality.
    revision: int = field(default=0, compare=False)


@dataclass(frozen=True)
class MatchRecord:
    """What the history of a monitor keeps about one event it caused (aligned one-to-one
    with the events a follower enqueues in the same write)."""

    monitor_id: str
    kind: str  # transfer.detected | transfer.confirmed | transfer.reverted
    tx_hash: str  # lower-case 0x + 64 hex
    addresses: tuple[str, ...]  # the watched addresses involved, lower-case
    block_number: int


@dataclass(frozen=True)
class MonitorEvent:
    """One entry of a monitor's event history: the match and the event it caused."""

    match: MatchRecord
    event_id: str
    event_type: str
    accepted_at: datetime
    data_json: str  # the event's data as stored, delivered byte for byte

    @functools.cached_property
    def data(self) -> Any:
        return json.loads(self.data_json)
