"""`service.delivery.pacing.Pacing`: which claims a busy endpoint's lane takes now, and when
the rest come back (spread along the endpoint's own pace, never further than the cap)."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from service.delivery.pacing import UNTIMED_PUT_OFF, Pacing, RateLimit
from service.models import MIN_RATE_LIMIT, Endpoint

NOW = datetime(2026, 1, 1, tzinfo=UTC)
EP = Endpoint(id="ep_a", url="https://hooks.example.com/a", secret="whsec_" + "A" * 32)


def seconds(at: datetime | None) -> float | None:
    return None if at is None else (at - NOW).total_seconds()


def test_before_any_attempt_is_timed_a_lanes_worth_is_taken_and_the_rest_soon_after() -> None:
    pacing = Pacing(concurrency=5, max_wait=2.0, max_put_off=60.0)
    assert pacing.put_off(EP, 9, NOW) is None
    assert seconds(pacing.put_off(EP, 10, NOW)) == UNTIMED_PUT_OFF
    assert seconds(pacing.busy(NOW, {"ep_a": 10}).get("ep_a")) == UNTIMED_PUT_OFF
    pacing.note("ep_a", 0.001)  # fast after all: caught up at once, not busy for 0.5 s
    assert pacing.busy(NOW, {"ep_a": 10}) == {}


def test_a_fast_endpoint_takes_everything_a_slow_one_is_spread_along_its_pace() -> None:
    pacing = Pacing(concurrency=5, max_wait=2.0, max_put_off=60.0)
    pacing.note("ep_a", 0.002)
    assert pacing.put_off(EP, 1000, NOW) is None  # 5 at 2 ms each: 0.4 s for 1000
    for _ in range(50):  # it became slow: one second per request, 5 per second
        pacing.note("ep_a", 1.0)
    assert pacing.put_off(EP, 8, NOW) is None  # starts within 1.8 s
    first = seconds(pacing.put_off(EP, 10, NOW))
    second = seconds(pacing.put_off(EP, 10, NOW))  # behind the first, not beside it
    assert first is not None and second is not None and 2.0 < first < second
    assert abs(second - first - 0.2) < 0.05  # one more slot of 1/5 s
    for _ in range(400):  # 80 s of backlog: capped at 60 s, looked at again then
        last = seconds(pacing.put_off(EP, 10, NOW))
    assert last == 60.0


def test_the_endpoints_rate_limit_sets_the_pace_when_it_is_slower() -> None:
    pacing = Pacing(concurrency=10, max_wait=2.0, max_put_off=60.0)
    limited = dataclasses.replace(EP, rate_limit=1.0)
    pacing.note("ep_a", 0.001)
    assert pacing.put_off(limited, 1, NOW) is None  # starts within 2 s
    assert seconds(pacing.put_off(limited, 2, NOW)) == 3.0
    later = NOW + timedelta(seconds=10)  # the schedule booked before is in the past now
    assert seconds(pacing.put_off(limited, 2, later)) == 13.0


def test_busy_lists_the_endpoints_still_behind_until_their_schedule_ends() -> None:
    pacing = Pacing(concurrency=1, max_wait=2.0, max_put_off=60.0)
    pacing.note("ep_a", 1.0)
    assert pacing.busy(NOW, {"ep_a": 5}) == {}
    ends = [pacing.put_off(EP, 5, NOW) for _ in range(3)]
    assert pacing.busy(NOW, {"ep_a": 5}) == {"ep_a": ends[-1]}
    assert pacing.busy(NOW, {}) == {}  # its lane drained: it takes more at once
    assert pacing.busy(NOW, {"ep_a": 1}) == {}  # caught up: one waiting starts in 2 s
    assert ends[-1] is not None and pacing.busy(ends[-1], {"ep_a": 5}) == {}  # schedule over


@pytest.mark.parametrize("stored", [1e-12, 0.0, -1.0, float("nan"), float("inf"), 1e300])
def test_any_stored_rate_limit_paces_within_the_cap(stored: float) -> None:
    """A store written before the API checked `rate_limit` may hold any float: pacing by it
    never overflows (1e-12 once raised OverflowError and stopped the dispatcher) and puts
    nothing off further than the cap."""
    pacing = Pacing(concurrency=2, max_wait=2.0, max_put_off=60.0)
    bad = dataclasses.replace(EP, rate_limit=stored)
    pacing.note("ep_a", 0.01)
    for waiting in (0, 1, 5, 1000):
        at = seconds(pacing.put_off(bad, waiting, NOW))
        assert at is None or 0 < at <= 60.0
    assert all(0 < (at - NOW).total_seconds() <= 60.0 for at in pacing.busy(
        NOW, {"ep_a": 1000}).values())


@pytest.mark.parametrize("stored", [1e-12, -1.0])
async def test_a_rate_limit_below_the_range_is_taken_at_the_lowest_rate(stored: float) -> None:
    bucket = RateLimit(stored)
    assert bucket.rate == stored  # as the endpoint says, so the dispatcher keeps the bucket
    await asyncio.wait_for(bucket.take(), 1)  # the first start is free
    bucket.at -= 1 / MIN_RATE_LIMIT  # as if the lowest rate's interval had passed
    await asyncio.wait_for(bucket.take(), 1)


async def test_a_nan_rate_limit_limits_nothing() -> None:
    bucket = RateLimit(float("nan"))
    for _ in range(5):
        await asyncio.wait_for(bucket.take(), 1)
