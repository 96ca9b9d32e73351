"""The delivery state machine: after an attempt, what happens to the delivery and endpoint.

pending → (attempt) → delivered                     on 2xx
                    → retrying, due after a delay    on any other answer or no answer
                    → dead                           retries exhausted, or 410 Gone
retrying behaves like pending. 3xx is a failure (redirects are never followed); 429, 502,
503 and 504 are throttling and honour `Retry-After`. An endpoint answering 410, or failing
without a single success for `disable_after`, is disabled. Transports only report what
happened; every transition is decided here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from service.models import Claim, DeliveryState, Verdict

THROTTLING = frozenset({429, 502, 503, 504})
JITTER = 0.2  # ±20 % on scheduled delays, so retries of one outage do not arrive together
MAX_RETRY_AFTER = 24 * 3600.0  # an endpoint cannot park a delivery for longer
_DELIVERED = Verdict(DeliveryState.DELIVERED)  # a frozen value: one serves every success


@dataclass(frozen=True)
class Policy:
    retry_schedule: Sequence[float]  # seconds to wait after attempt 1, 2, ...
    disable_after: float  # seconds of failing continuously before the endpoint is disabled


def retry_after(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds the `Retry-After` header asks for (delta-seconds or an HTTP date)."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER)


def decide(claim: Claim, status: int | None, headers: Mapping[str, str], now: datetime,
           policy: Policy, rand: Callable[[], float] = random.random) -> Verdict:
    """The verdict for the attempt just made (`status` None: no HTTP answer)."""
    endpoint = claim.endpoint
    if status is not None and 200 <= status < 300:
        return _DELIVERED
    failing_since = endpoint.failing_since or now
    if status == 410:
        return Verdict(DeliveryState.DEAD, disable_endpoint="the endpoint answered 410 Gone",
                       endpoint_failing_since=failing_since)
    disable = ""
    if (now - failing_since).total_seconds() >= policy.disable_after:
        days = policy.disable_after / 86400
        disable = f"every delivery failed for {days:g} days"
    attempts = claim.delivery.attempts + 1
    if attempts > len(policy.retry_schedule) or disable:
        return Verdict(DeliveryState.DEAD, disable_endpoint=disable,
                       endpoint_failing_since=failing_since)
    delay = policy.retry_schedule[attempts - 1] * (1 + JITTER * (2 * rand() - 1))
    if status in THROTTLING:
        asked = retry_after(headers, now)
        if asked is not None:
            delay = asked  # the endpoint said when; no jitter on its word
    return Verdict(DeliveryState.RETRYING, next_attempt_at=now + timedelta(seconds=delay),
                   endpoint_failing_since=failing_since)
