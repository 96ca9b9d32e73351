"""The delivery state machine: every transition, from the attempt's outcome alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.delivery.state import Policy, decide, retry_after
from service.models import Claim, Delivery, DeliveryState, Endpoint, Event

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POLICY = Policy(retry_schedule=(5.0, 300.0, 1800.0), disable_after=5 * 86400.0)


def claim(attempts: int = 0, failing_since: datetime | None = None) -> Claim:
    endpoint = Endpoint("ep_1", "https://example.com/hook", "whsec_x",
                        failing_since=failing_since)
    event = Event("evt_1", "transfer.detected", '{"a": 1}', NOW)
    delivery = Delivery("msg_1", "evt_1", "ep_1", DeliveryState.PENDING, attempts, NOW, NOW)
    return Claim(delivery, event, endpoint, "lease")


def middle() -> float:
    return 0.5  # no jitter: 2 * 0.5 - 1 == 0


@pytest.mark.parametrize("status", [200, 201, 204, 299])
def test_2xx_delivers_and_clears_the_failure_streak(status: int) -> None:
    verdict = decide(claim(failing_since=NOW - timedelta(days=1)), status, {}, NOW, POLICY)
    assert verdict.state is DeliveryState.DELIVERED
    assert verdict.endpoint_failing_since is None and not verdict.disable_endpoint


@pytest.mark.parametrize("status", [None, 301, 302, 400, 404, 500])
def test_failures_retry_on_the_schedule(status: int | None) -> None:
    verdict = decide(claim(attempts=1), status, {}, NOW, POLICY, rand=middle)
    assert verdict.state is DeliveryState.RETRYING
    assert verdict.next_attempt_at == NOW + timedelta(seconds=300)  # after attempt 2
    assert verdict.endpoint_failing_since == NOW  # the streak starts now


def test_jitter_stays_within_twenty_percent() -> None:
    low = decide(claim(), 500, {}, NOW, POLICY, rand=lambda: 0.0).next_attempt_at
    high = decide(claim(), 500, {}, NOW, POLICY, rand=lambda: 0.999999).next_attempt_at
    assert low == NOW + timedelta(seconds=4)
    assert high is not None and high <= NOW + timedelta(seconds=6)


def test_last_retry_makes_it_dead() -> None:
    verdict = decide(claim(attempts=3), 500, {}, NOW, POLICY)
    assert verdict.state is DeliveryState.DEAD and verdict.next_attempt_at is None
    assert not verdict.disable_endpoint


def test_410_kills_the_delivery_and_disables_the_endpoint() -> None:
    verdict = decide(claim(), 410, {}, NOW, POLICY)
    assert verdict.state is DeliveryState.DEAD
    assert "410" in verdict.disable_endpoint


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_throttling_honours_retry_after(status: int) -> None:
    verdict = decide(claim(), status, {"Retry-After": "120"}, NOW, POLICY)
    assert verdict.next_attempt_at == NOW + timedelta(seconds=120)
    # without the header: the schedule
    plain = decide(claim(), status, {}, NOW, POLICY, rand=middle)
    assert plain.next_attempt_at == NOW + timedelta(seconds=5)


def test_retry_after_is_ignored_for_other_statuses() -> None:
    verdict = decide(claim(), 500, {"retry-after": "999"}, NOW, POLICY, rand=middle)
    assert verdict.next_attempt_at == NOW + timedelta(seconds=5)


def test_retry_after_forms() -> None:
    assert retry_after({"Retry-After": "30"}, NOW) == 30
    date = "Thu, 26 Nov 2026 12:01:00 GMT"
    assert retry_after({"retry-after": date}, NOW) == 60
    assert retry_after({"Retry-After": "soon"}, NOW) is None
    assert retry_after({"Retry-After": "999999999"}, NOW) == 24 * 3600
    assert retry_after({}, NOW) is None


def test_endpoint_failing_for_disable_after_is_disabled() -> None:
    since = NOW - timedelta(days=5, seconds=1)
    verdict = decide(claim(failing_since=since), 500, {}, NOW, POLICY)
    assert verdict.state is DeliveryState.DEAD
    assert verdict.disable_endpoint == "every delivery failed for 5 days"
    assert verdict.endpoint_failing_since == since
    young = decide(claim(failing_since=NOW - timedelta(days=4)), 500, {}, NOW, POLICY)
    assert young.state is DeliveryState.RETRYING and not young.disable_endpoint
