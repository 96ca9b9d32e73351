"""The store contract (see `contract`): endpoints, accepting events (fan-out, idempotency
keys), concurrent accepts, and everything surviving a reopen.
"""

from __future__ import annotations

import asyncio

import pytest

from service.models import DeliveryState, Event, NewEvent, Verdict
from service.store import Store
from tests.service.store.contract import S
from tests.support.stores import NOW, StoreFactory, accept_one, attempt, endpoint

pytestmark = pytest.mark.timeout(30)


async def test_endpoints_round_trip(store: Store) -> None:
    a, b = endpoint("ep_a", "order.paid", "order.refunded"), endpoint("ep_b", disabled=True)
    await asyncio.gather(store.put_endpoint(a), store.put_endpoint(b))
    assert (await store.get_endpoint("ep_a"), await store.get_endpoint("ep_b")) == (a, b)
    assert await store.get_endpoint("ep_nope") is None
    assert sorted(e.id for e in await store.list_endpoints()) == ["ep_a", "ep_b"]

    changed = endpoint("ep_a", failing_since=NOW - 60 * S)
    await store.put_endpoint(changed)
    assert await store.get_endpoint("ep_a") == changed
    assert await store.delete_endpoint("ep_a") is True
    assert await store.delete_endpoint("ep_a") is False
    assert await store.get_endpoint("ep_a") is None
    assert [e.id for e in await store.list_endpoints()] == ["ep_b"]
    assert await store.ping() is True


async def test_accept_fans_out_by_event_type(store: Store) -> None:
    for ep in (endpoint("ep_all"), endpoint("ep_paid", "order.paid"),
               endpoint("ep_off", disabled=True)):
        await store.put_endpoint(ep)
    paid, shipped = await store.accept([NewEvent("order.paid", {"id": 7}),
                                        NewEvent("order.shipped", [1, "two", None])], NOW)
    assert paid != shipped
    assert {d.event_id for d in await store.deliveries_of("ep_all")} == {paid, shipped}
    assert [d.event_id for d in await store.deliveries_of("ep_paid")] == [paid]
    assert await store.deliveries_of("ep_off") == []

    view = await store.get_event(paid)
    assert view is not None
    assert view.event == Event(paid, "order.paid", '{"id": 7}', NOW)
    assert view.event.data == {"id": 7}
    assert sorted(d.endpoint_id for d, _ in view.deliveries) == ["ep_all", "ep_paid"]
    for delivery, attempts in view.deliveries:
        assert delivery.id.startswith("msg_") and delivery.event_id == paid
        assert (delivery.state, delivery.attempts, attempts) == (DeliveryState.PENDING, 0, ())
        assert delivery.next_attempt_at == NOW and delivery.created_at == NOW


async def test_accept_with_no_endpoints_stores_the_event(store: Store) -> None:
    event_id = await accept_one(store, data={"alone": True})
    view = await store.get_event(event_id)
    assert view is not None and view.event.data == {"alone": True} and view.deliveries == ()
    assert await store.claim(10, NOW, 30) == []
    assert await store.get_event("evt_unknown") is None


async def test_idempotency_key_answers_the_first_id(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    first = await accept_one(store, key="k-1")
    assert await accept_one(store, key="k-1", at=NOW + 3600 * S, data={"n": 2}) == first
    ids = await store.accept([NewEvent("t", 1, "k-2"), NewEvent("t", 2, "k-2"),
                              NewEvent("t", 3, "k-1"), NewEvent("t", 4)], NOW + 5 * S)
    assert ids[0] == ids[1] and ids[2] == first and len(set(ids)) == 3
    assert len(await store.deliveries_of("ep_a")) == 3  # first, k-2 and the keyless one
    view = await store.get_event(first)
    assert view is not None and view.event.data == {"n": 1} and view.event.idempotency_key == "k-1"


async def test_idempotency_key_expires_after_the_window(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    first = await accept_one(store, key="k")
    later = await accept_one(store, key="k", at=NOW + 25 * 3600 * S)
    assert later != first
    assert await accept_one(store, key="k", at=NOW + 26 * 3600 * S) == later
    assert len(await store.deliveries_of("ep_a")) == 2


async def test_everything_survives_a_reopen(store_factory: StoreFactory) -> None:
    first = store_factory()
    await first.open()
    await first.put_endpoint(endpoint("ep_a", failing_since=NOW))
    await first.put_endpoint(endpoint("ep_b", "other.type"))
    ids = await first.accept([NewEvent("t", {"i": i}, f"key-{i}") for i in range(5)], NOW)
    (claim,) = await first.claim(1, NOW, 30)
    await first.settle(claim, attempt(claim, NOW, 502),
                       Verdict(DeliveryState.RETRYING, NOW + 60 * S, endpoint_failing_since=NOW))
    before = ([await first.get_event(i) for i in ids], await first.list_endpoints(),
              await first.deliveries_of("ep_a"), await first.stats(NOW))
    await first.close()

    second = store_factory()
    await second.open()
    try:
        after = ([await second.get_event(i) for i in ids], await second.list_endpoints(),
                 await second.deliveries_of("ep_a"), await second.stats(NOW))
        assert after == before
        assert await second.accept([NewEvent("t", None, "key-3")], NOW + S) == [ids[3]]
        assert len(await second.claim(10, NOW + 61 * S, 30)) == 5
    finally:
        await second.close()


async def test_concurrent_accepts_each_get_one_id_and_one_delivery(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    await store.put_endpoint(endpoint("ep_b"))
    results = await asyncio.gather(*(store.accept([NewEvent("t", {"i": i})], NOW)
                                     for i in range(200)))
    ids = [event_id for (event_id,) in results]
    assert len(set(ids)) == 200
    for ep in ("ep_a", "ep_b"):
        deliveries = await store.deliveries_of(ep)
        assert sorted(d.event_id for d in deliveries) == sorted(ids)
    claimed = await store.claim(1000, NOW, 30)
    assert len({c.delivery.id for c in claimed}) == len(claimed) == 400
