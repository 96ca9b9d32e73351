"""The store contract (see `contract`): the delivery queue. Claiming with leases, settling
(one and many), releasing, replaying, the queue's stats and an event's attempts.
"""

from __future__ import annotations

import asyncio

import pytest

from service.models import DeliveryState, NewEvent, QueueStats, Verdict
from service.store import Store
from tests.service.store.contract import S
from tests.support.stores import NOW, accept_one, attempt, endpoint

pytestmark = pytest.mark.timeout(30)


async def test_claim_takes_the_oldest_due_first_up_to_the_limit(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    ids = [await accept_one(store, at=NOW + i * S) for i in range(5)]
    future = await accept_one(store, at=NOW + 100 * S)  # not due yet at NOW + 10 s
    first = await store.claim(3, NOW + 10 * S, 3600)
    assert [c.event.id for c in first] == ids[:3]
    rest = await store.claim(10, NOW + 10 * S, 3600)
    assert [c.event.id for c in rest] == ids[3:]
    assert await store.claim(10, NOW + 10 * S, 3600) == []
    assert [c.event.id for c in await store.claim(10, NOW + 100 * S, 3600)] == [future]


async def test_claim_carries_event_and_endpoint(store: Store) -> None:
    ep = endpoint("ep_a", failing_since=NOW - 5 * S)
    await store.put_endpoint(ep)
    data = {"nested": {"list": [1, 2.5, None, True], "text": "ünïcode"}}
    event_id = await accept_one(store, "block.new", key="k", data=data)
    (claim,) = await store.claim(10, NOW, 30)
    assert claim.endpoint == ep
    assert (claim.event.id, claim.event.type, claim.event.data) == (event_id, "block.new", data)
    assert (claim.event.accepted_at, claim.event.idempotency_key) == (NOW, "k")
    assert (claim.delivery.event_id, claim.delivery.endpoint_id) == (event_id, "ep_a")
    assert claim.delivery.state is DeliveryState.PENDING and claim.delivery.attempts == 0


async def test_a_lease_blocks_other_claims_until_it_expires(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    await accept_one(store)
    (claim,) = await store.claim(10, NOW, 30)
    assert await store.claim(10, NOW + 29 * S, 30) == []
    (again,) = await store.claim(10, NOW + 31 * S, 30)
    assert again.delivery.id == claim.delivery.id


async def test_concurrent_claims_never_share_a_delivery(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    await store.accept([NewEvent("t", i) for i in range(50)], NOW)
    batches = await asyncio.gather(*(store.claim(20, NOW, 30) for _ in range(5)))
    ids = [c.delivery.id for batch in batches for c in batch]
    assert len(ids) == len(set(ids)) == 50


async def test_settle_delivered_records_the_attempt(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a", failing_since=NOW - 60 * S))
    event_id = await accept_one(store)
    (claim,) = await store.claim(10, NOW, 30)
    done = attempt(claim, NOW + S)
    await store.settle(claim, done, Verdict(DeliveryState.DELIVERED))
    view = await store.get_event(event_id)
    assert view is not None
    ((delivery, attempts),) = view.deliveries
    assert (delivery.state, delivery.attempts, attempts) == (DeliveryState.DELIVERED, 1, (done,))
    assert await store.claim(10, NOW + 86400 * S, 30) == []
    ep = await store.get_endpoint("ep_a")
    assert ep is not None and ep.failing_since is None  # a success ends the failure streak


async def test_settle_many_applies_each_outcome_in_order(store: Store) -> None:
    for name in ("ep_a", "ep_b"):
        await store.put_endpoint(endpoint(name))
    await store.accept([NewEvent("t", i) for i in range(3)], NOW)
    claims = await store.claim(10, NOW, 30)
    by_ep = {(c.endpoint.id, c.event.data): c for c in claims}
    a0, a1, a2 = (by_ep["ep_a", i] for i in range(3))
    b0, b1 = by_ep["ep_b", 0], by_ep["ep_b", 1]
    failing = Verdict(DeliveryState.RETRYING, next_attempt_at=NOW + 60 * S,
                      endpoint_failing_since=NOW)
    await store.settle_many([
        (a0, attempt(a0, NOW, 503), failing),
        (a1, attempt(a1, NOW), Verdict(DeliveryState.DELIVERED)),  # ends ep_a's streak
        (a2, attempt(a2, NOW, 500), Verdict(DeliveryState.DEAD, endpoint_failing_since=NOW)),
        (b0, attempt(b0, NOW, 410), Verdict(DeliveryState.DEAD, disable_endpoint="410 Gone",
                                            endpoint_failing_since=NOW)),
        (b1, attempt(b1, NOW), Verdict(DeliveryState.DELIVERED)),  # does not re-enable
    ])
    await store.settle_many([])
    states = {d.id: (d.state, d.attempts) for e in ("ep_a", "ep_b")
              for d in await store.deliveries_of(e)}
    assert states[a0.delivery.id] == (DeliveryState.RETRYING, 1)
    assert states[a1.delivery.id] == (DeliveryState.DELIVERED, 1)
    assert states[a2.delivery.id] == (DeliveryState.DEAD, 1)
    assert states[b0.delivery.id] == (DeliveryState.DEAD, 1)
    assert states[b1.delivery.id] == (DeliveryState.DELIVERED, 1)
    ep_a, ep_b = await store.get_endpoint("ep_a"), await store.get_endpoint("ep_b")
    assert ep_a is not None and not ep_a.disabled and ep_a.failing_since == NOW
    assert ep_b is not None and ep_b.disabled and ep_b.disabled_reason == "410 Gone"
    (again,) = await store.claim(10, NOW + 61 * S, 30)  # ep_b is disabled: only a0 is due
    assert again.delivery.id == a0.delivery.id


async def test_settle_retrying_is_due_later(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    await accept_one(store)
    (claim,) = await store.claim(10, NOW, 30)
    verdict = Verdict(DeliveryState.RETRYING, next_attempt_at=NOW + 60 * S,
                      endpoint_failing_since=NOW)
    await store.settle(claim, attempt(claim, NOW, 503), verdict)
    assert await store.claim(10, NOW + 59 * S, 30) == []
    (again,) = await store.claim(10, NOW + 61 * S, 30)
    assert again.delivery.id == claim.delivery.id
    assert (again.delivery.state, again.delivery.attempts) == (DeliveryState.RETRYING, 1)
    assert again.delivery.next_attempt_at == NOW + 60 * S
    assert again.endpoint.failing_since == NOW


async def test_settle_dead_is_never_claimed_again(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    await accept_one(store)
    (claim,) = await store.claim(10, NOW, 30)
    await store.settle(claim, attempt(claim, NOW, None),
                       Verdict(DeliveryState.DEAD, endpoint_failing_since=NOW))
    assert await store.claim(10, NOW + 365 * 86400 * S, 30) == []
    (delivery,) = await store.deliveries_of("ep_a")
    assert (delivery.state, delivery.attempts) == (DeliveryState.DEAD, 1)


async def test_a_verdict_can_disable_the_endpoint(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    await store.put_endpoint(endpoint("ep_b"))
    await accept_one(store)
    await accept_one(store, at=NOW + S)
    (first,) = await store.claim(1, NOW + S, 30)
    gone, kept = first.endpoint.id, ({"ep_a", "ep_b"} - {first.endpoint.id}).pop()
    await store.settle(first, attempt(first, NOW + S, 410),
                       Verdict(DeliveryState.DEAD, disable_endpoint="410 Gone",
                               endpoint_failing_since=NOW))
    ep = await store.get_endpoint(gone)
    assert ep is not None and (ep.disabled, ep.disabled_reason) == (True, "410 Gone")
    assert ep.failing_since == NOW
    left = await store.claim(10, NOW + S, 30)
    assert {c.endpoint.id for c in left} == {kept} and len(left) == 2
    later = await accept_one(store, at=NOW + 2 * S)
    view = await store.get_event(later)
    assert view is not None and [d.endpoint_id for d, _ in view.deliveries] == [kept]
    assert (await store.stats(NOW + 2 * S)).disabled_endpoints == 1


async def test_release_makes_claims_due_at_once(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    await store.accept([NewEvent("t", i) for i in range(3)], NOW)
    claims = await store.claim(10, NOW, 3600)
    await store.release(claims)
    again = await store.claim(10, NOW + S, 3600)
    assert sorted(c.delivery.id for c in again) == sorted(c.delivery.id for c in claims)
    assert all(c.delivery.attempts == 0 for c in again)


async def test_release_not_before_puts_each_claim_off_until_its_time(store: Store) -> None:
    """What the dispatcher does with work for an endpoint that is busy for a while: each
    claim comes back at its own time, others' work is claimed meanwhile, nothing is lost."""
    await store.put_endpoint(endpoint("ep_a"))
    await store.accept([NewEvent("t", i) for i in range(3)], NOW)
    claims = await store.claim(10, NOW, 3600)
    await store.release(claims, [NOW + 10 * S, NOW + 20 * S, NOW - S])  # past: at once
    await store.accept([NewEvent("t", 9)], NOW + S)
    first = await store.claim(10, NOW + 2 * S, 3600)
    assert first[0].delivery.id == claims[2].delivery.id
    assert claims[0].delivery.id not in {c.delivery.id for c in first} and len(first) == 2
    assert [c.delivery.id for c in await store.claim(10, NOW + 11 * S, 3600)] == [
        claims[0].delivery.id]
    later = await store.claim(10, NOW + 21 * S, 3600)
    assert [c.delivery.id for c in later] == [claims[1].delivery.id]
    assert later[0].delivery.attempts == 0  # put off, not attempted
    stale = claims[1]  # its lease was taken over by the claim just made: left alone
    await store.release([stale], [NOW + 100 * S])
    assert await store.claim(10, NOW + 200 * S, 3600) == []  # still leased by the new claim


async def test_claim_puts_off_a_busy_endpoints_deliveries_and_fills_up_with_others(
        store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a", "a"))
    await store.put_endpoint(endpoint("ep_b", "b"))
    await store.accept([NewEvent("a", i) for i in range(30)], NOW)  # older than b's
    await store.accept([NewEvent("b", i) for i in range(5)], NOW + S)
    claims = await store.claim(5, NOW + 2 * S, 3600, {"ep_a": NOW + 60 * S})
    assert [c.endpoint.id for c in claims] == ["ep_b"] * 5  # not 5 of a's, not fewer
    assert await store.claim(50, NOW + 30 * S, 3600, {"ep_a": NOW + 60 * S}) == []
    back = await store.claim(50, NOW + 60 * S, 3600)  # no longer busy: all there
    assert len(back) == 30 and {c.endpoint.id for c in back} == {"ep_a"}
    assert all(c.delivery.attempts == 0 for c in back)


async def test_replay_revives_dead_deliveries_in_the_window(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    ids = [await accept_one(store, at=NOW + h * 3600 * S) for h in range(3)]
    for _ in ids:
        (claim,) = await store.claim(1, NOW + 3 * 3600 * S, 30)
        await store.settle(claim, attempt(claim, NOW, 500), Verdict(DeliveryState.DEAD))
    replay_at = NOW + 4 * 3600 * S
    assert await store.replay("ep_a", NOW + 1800 * S, NOW + 5400 * S, replay_at) == 1
    (claim,) = await store.claim(10, replay_at, 30)
    assert claim.event.id == ids[1] and claim.delivery.next_attempt_at == replay_at
    assert claim.delivery.state is DeliveryState.PENDING
    assert await store.replay("ep_a", None, None, replay_at) == 2
    assert await store.replay("ep_a", None, None, replay_at) == 0
    assert sorted(c.event.id for c in await store.claim(10, replay_at, 30)) == sorted(
        [ids[0], ids[2]])


async def test_a_mixed_batch_reads_the_same_before_and_after_each_claim(store: Store) -> None:
    """Deliveries read alike whether a backend has made their rows yet or not."""
    await store.put_endpoint(endpoint("ep_paid", "order.paid"))
    await store.put_endpoint(endpoint("ep_all"))
    kinds = ["order.paid", "order.shipped", "order.paid", "order.shipped", "order.paid"]
    ids = await store.accept([NewEvent(k, i) for i, k in enumerate(kinds)], NOW)
    paid = [ids[i] for i in (0, 2, 4)]
    assert [d.event_id for d in await store.deliveries_of("ep_paid")] == paid
    assert (await store.stats(NOW + 10 * S)).depth == 8
    seen: list[tuple[str, str]] = []
    for _ in range(4):
        claims = await store.claim(2, NOW, 30)
        seen += [(c.endpoint.id, c.event.id) for c in claims]
        for c in claims:
            await store.settle(c, attempt(c, NOW), Verdict(DeliveryState.DELIVERED))
        for event_id in (ids[1], ids[2]):  # a view mid-way holds every delivery, each once
            view = await store.get_event(event_id)
            assert view is not None
            wanted = ["ep_all", "ep_paid"] if event_id == ids[2] else ["ep_all"]
            assert sorted(d.endpoint_id for d, _ in view.deliveries) == wanted
            for delivery, attempts in view.deliveries:
                done = (delivery.endpoint_id, event_id) in seen
                assert delivery.state is (DeliveryState.DELIVERED if done else
                                          DeliveryState.PENDING)
                assert len(attempts) == delivery.attempts == int(done)
    assert sorted(seen) == sorted([("ep_all", i) for i in ids] + [("ep_paid", i) for i in paid])
    assert await store.claim(10, NOW + 3600 * S, 30) == []
    stats = await store.stats(NOW + 10 * S)
    assert (stats.depth, stats.oldest_pending_age) == (0, 0.0)


async def test_delete_endpoint_kills_its_active_deliveries(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    await store.put_endpoint(endpoint("ep_b"))
    event_id = await accept_one(store)
    assert await store.delete_endpoint("ep_a")
    assert [c.endpoint.id for c in await store.claim(10, NOW, 30)] == ["ep_b"]
    view = await store.get_event(event_id)
    assert view is not None
    states = {d.endpoint_id: d.state for d, _ in view.deliveries}
    assert states == {"ep_a": DeliveryState.DEAD, "ep_b": DeliveryState.PENDING}
    assert (await store.stats(NOW)).depth == 1


def common(stats: QueueStats) -> QueueStats:
    """What both backends report (the Redis queue adds its consumer group's gauges)."""
    return QueueStats(stats.depth, stats.oldest_pending_age, stats.disabled_endpoints)


async def test_stats(store: Store) -> None:
    assert common(await store.stats(NOW)) == QueueStats(0, 0.0, 0)
    await store.put_endpoint(endpoint("ep_a"))
    await store.put_endpoint(endpoint("ep_off", disabled=True))
    await accept_one(store)
    await accept_one(store, at=NOW + 10 * S)
    assert common(await store.stats(NOW + 100 * S)) == QueueStats(2, 100.0, 1)
    (claim,) = await store.claim(1, NOW + 100 * S, 30)
    assert (await store.stats(NOW + 100 * S)).depth == 2  # in flight is still in the queue
    await store.settle(claim, attempt(claim, NOW + 100 * S), Verdict(DeliveryState.DELIVERED))
    assert common(await store.stats(NOW + 100 * S)) == QueueStats(1, 90.0, 1)


async def test_get_event_lists_attempts_in_order(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    event_id = await accept_one(store)
    made = []
    for n, status in enumerate((500, None, 200)):
        (claim,) = await store.claim(1, NOW + n * 60 * S, 30)
        made.append(attempt(claim, NOW + n * 60 * S, status))
        state = DeliveryState.DELIVERED if status == 200 else DeliveryState.RETRYING
        await store.settle(claim, made[-1], Verdict(state, NOW + (n + 1) * 60 * S))
    view = await store.get_event(event_id)
    assert view is not None
    ((delivery, attempts),) = view.deliveries
    assert attempts == tuple(made) and [a.number for a in attempts] == [1, 2, 3]
    assert (delivery.state, delivery.attempts) == (DeliveryState.DELIVERED, 3)
    assert delivery.event_accepted_at in (None, NOW)
