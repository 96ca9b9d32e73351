"""The store contract: every backend in tests/support/stores.py must pass each test here.

Times are passed in (`NOW` and offsets from it), never read from a clock, so leases, retry
times and the idempotency window are checked exactly and without waiting.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from service import CursorTaken
from service.models import (
    DeliveryState,
    Event,
    MatchRecord,
    Monitor,
    MonitorEvent,
    NewEvent,
    QueueStats,
    Verdict,
)
from service.store import Store
from tests.support.stores import NOW, StoreFactory, accept_one, attempt, endpoint

pytestmark = pytest.mark.timeout(30)
S = timedelta(seconds=1)


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


async def test_stats(store: Store) -> None:
    assert await store.stats(NOW) == QueueStats(0, 0.0, 0)
    await store.put_endpoint(endpoint("ep_a"))
    await store.put_endpoint(endpoint("ep_off", disabled=True))
    await accept_one(store)
    await accept_one(store, at=NOW + 10 * S)
    assert await store.stats(NOW + 100 * S) == QueueStats(2, 100.0, 1)
    (claim,) = await store.claim(1, NOW + 100 * S, 30)
    assert (await store.stats(NOW + 100 * S)).depth == 2  # in flight is still in the queue
    await store.settle(claim, attempt(claim, NOW + 100 * S), Verdict(DeliveryState.DELIVERED))
    assert await store.stats(NOW + 100 * S) == QueueStats(1, 90.0, 1)


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


# --- address monitors and chain followers -----------------------------------------------
def monitor(monitor_id: str, *addresses: str, chain: str = "ethereum", endpoint_id: str = "ep_a",
            enabled: bool = True) -> Monitor:
    """A monitor with every field away from its default, so round trips check them all."""
    return Monitor(id=monitor_id, chain=chain,
                   addresses=frozenset(addresses or [f"0x{1:040x}", f"0x{2:040x}"]),
                   endpoint_id=endpoint_id, native=False, erc20=True, erc721=False,
                   contracts=frozenset({"0x" + "ab" * 20}), direction="in", confirmations=3,
                   tags=("treasury", "hot"), enabled=enabled, created_at=NOW)


def transfer(monitor_id: str, tx: int, *addresses: int, kind: str = "transfer.detected",
             block: int = 100) -> tuple[NewEvent, MatchRecord]:
    """A follower's event and its match; the idempotency key is deterministic, as theirs."""
    tx_hash = f"0x{tx:064x}"
    watched = tuple(f"0x{a:040x}" for a in addresses)
    event = NewEvent(kind, {"tx": tx_hash, "monitor": monitor_id},
                     f"ethereum/{tx_hash}/{monitor_id}/{kind}")
    return event, MatchRecord(monitor_id, kind, tx_hash, watched, block)


async def test_monitors_round_trip_in_creation_order(store: Store) -> None:
    assert (await store.monitors_version(), await store.list_monitors()) == (0, [])
    big = monitor("mon_big", *(f"0x{i:040x}" for i in range(100_000)))
    other = dataclasses.replace(monitor("mon_poly", chain="polygon"), confirmations=None,
                                contracts=frozenset(), tags=(), created_at=None)
    await store.put_monitor(monitor("mon_a"))
    await store.put_monitor(big)
    await store.put_monitor(other)
    assert await store.get_monitor("mon_big") == big
    assert await store.get_monitor("mon_poly") == other
    assert await store.get_monitor("mon_nope") is None
    assert [m.id for m in await store.list_monitors()] == ["mon_a", "mon_big", "mon_poly"]
    assert [m.id for m in await store.list_monitors("polygon")] == ["mon_poly"]
    assert await store.list_monitors("bitcoin") == await store.list_monitors("") == []
    version = await store.monitors_version()
    assert version >= 3

    changed = dataclasses.replace(monitor("mon_a", f"0x{9:040x}"), enabled=False)
    await store.put_monitor(changed)  # a replacement keeps its place in the listing
    assert await store.monitors_version() > version
    assert (await store.list_monitors())[0] == changed
    version = await store.monitors_version()
    assert await store.delete_monitor("mon_a") is True
    assert await store.monitors_version() > version
    version = await store.monitors_version()
    assert await store.delete_monitor("mon_a") is False
    assert await store.monitors_version() == version  # nothing changed
    assert [m.id for m in await store.list_monitors()] == ["mon_big", "mon_poly"]


async def test_replace_monitor_writes_only_over_the_revision_it_read(store: Store) -> None:
    """Compare-and-set for PATCH: of two processes that read the same monitor, the second
    to write back is refused, and so is a write back over a deleted monitor."""
    await store.put_monitor(monitor("mon_a"))
    read = await store.get_monitor("mon_a")
    assert read is not None and read.revision >= 1
    mine = dataclasses.replace(read, addresses=read.addresses | {f"0x{7:040x}"})
    theirs = dataclasses.replace(read, addresses=read.addresses | {f"0x{8:040x}"})
    version = await store.monitors_version()
    assert await store.replace_monitor(theirs) is True
    assert await store.monitors_version() > version
    version = await store.monitors_version()
    assert await store.replace_monitor(mine) is False  # stale: read before theirs was written
    assert await store.monitors_version() == version
    now = await store.get_monitor("mon_a")
    assert now == theirs and now is not None and now.revision > read.revision
    assert [m.revision for m in await store.list_monitors()] == [now.revision]
    again = dataclasses.replace(now, addresses=now.addresses | {f"0x{7:040x}"})
    assert await store.replace_monitor(again) is True  # read afresh: written
    assert (await store.get_monitor("mon_a")) == again
    await store.put_monitor(monitor("mon_a"))  # an unconditional write moves it on too
    assert await store.replace_monitor(again) is False
    current = await store.get_monitor("mon_a")
    assert current is not None and await store.delete_monitor("mon_a")
    assert await store.replace_monitor(current) is False  # no resurrection
    assert await store.get_monitor("mon_a") is None


async def test_cursor_is_none_until_advance_saves_it(store: Store) -> None:
    assert await store.get_cursor("ethereum") is None
    assert await store.advance("ethereum", {"block": 7, "hashes": ["0xaa"]}, [], [], NOW) == []
    assert await store.get_cursor("ethereum") == {"block": 7, "hashes": ["0xaa"]}
    await store.advance("ethereum", {"block": 8}, [], [], NOW)
    assert await store.get_cursor("ethereum") == {"block": 8}
    assert await store.get_cursor("polygon") is None
    with pytest.raises(ValueError, match="1 events but 0 matches"):
        await store.advance("ethereum", {"block": 9}, [NewEvent("t", 1)], [], NOW)
    assert await store.get_cursor("ethereum") == {"block": 8}


async def test_advance_delivers_only_to_the_monitors_endpoint(store: Store) -> None:
    for ep in (endpoint("ep_a"), endpoint("ep_b"), endpoint("ep_all")):
        await store.put_endpoint(ep)
    await store.put_monitor(monitor("mon_a", endpoint_id="ep_a"))
    await store.put_monitor(monitor("mon_b", endpoint_id="ep_b"))
    await store.put_monitor(monitor("mon_off", endpoint_id="ep_a", enabled=False))
    steps = [transfer("mon_a", 1, 1), transfer("mon_b", 2, 2), transfer("mon_off", 3, 1),
             transfer("mon_gone", 4, 1)]
    ids = await store.advance("ethereum", {"block": 100}, [e for e, _ in steps],
                              [m for _, m in steps], NOW)
    assert len(set(ids)) == 4
    assert [d.event_id for d in await store.deliveries_of("ep_a")] == [ids[0]]
    assert [d.event_id for d in await store.deliveries_of("ep_b")] == [ids[1]]
    assert await store.deliveries_of("ep_all") == []  # never another customer's transfers
    for event_id, (event, _) in zip(ids, steps, strict=True):
        view = await store.get_event(event_id)  # stored, delivered or not
        assert view is not None and view.event.data == event.data
        assert view.event.idempotency_key == event.idempotency_key
    (entry,) = await store.monitor_events("mon_off")
    assert entry.match == steps[2][1]
    assert [c.event.id for c in await store.claim(10, NOW, 30)] == ids[:2]


async def test_advance_again_returns_the_first_ids_and_adds_nothing(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    await store.put_monitor(monitor("mon_a"))
    steps = [transfer("mon_a", 1, 1), transfer("mon_a", 2, 2)]
    events, matches = [e for e, _ in steps], [m for _, m in steps]
    ids = await store.advance("ethereum", {"block": 100}, events, matches, NOW)
    history = await store.monitor_events("mon_a")
    # a re-processed block, and one event twice in one step: nothing new anywhere
    again = await store.advance("ethereum", {"block": 101}, [*events, events[0]],
                                [*matches, matches[0]], NOW + S)
    assert again == [*ids, ids[0]]
    assert await store.monitor_events("mon_a") == history
    assert len(await store.deliveries_of("ep_a")) == 2
    assert await store.get_cursor("ethereum") == {"block": 101}


async def test_one_holder_at_a_time_holds_a_cursor_lease(store: Store) -> None:
    assert await store.hold_cursor("chain:eth", "proc-a", 30)
    assert await store.hold_cursor("chain:eth", "proc-a", 30)  # renewed
    assert not await store.hold_cursor("chain:eth", "proc-b", 30)
    assert await store.hold_cursor("chain:polygon", "proc-b", 30)  # leases are per cursor
    await store.let_go_cursor("chain:eth", "proc-b")  # not its lease: nothing happens
    assert not await store.hold_cursor("chain:eth", "proc-b", 30)
    await store.let_go_cursor("chain:eth", "proc-a")
    assert await store.hold_cursor("chain:eth", "proc-b", 30)
    assert not await store.hold_cursor("chain:eth", "proc-a", 30)


async def test_a_lease_that_is_not_renewed_runs_out(store: Store) -> None:
    assert await store.hold_cursor("chain:eth", "proc-a", 0.2)
    assert not await store.hold_cursor("chain:eth", "proc-b", 0.2)
    await asyncio.sleep(0.35)  # proc-a died: it renews nothing
    assert await store.hold_cursor("chain:eth", "proc-b", 30)
    assert not await store.hold_cursor("chain:eth", "proc-a", 30)


async def test_advance_is_fenced_by_the_cursor_lease(store: Store) -> None:
    """A process that lost the lease without noticing writes nothing: neither cursor, nor
    events, nor history."""
    await store.put_endpoint(endpoint("ep_a"))
    await store.put_monitor(monitor("mon_a"))
    event, match = transfer("mon_a", 1, 1)
    assert await store.hold_cursor("ethereum", "proc-a", 0.2)
    await store.advance("ethereum", {"block": 1}, [], [], NOW, holder="proc-a")
    await asyncio.sleep(0.35)
    assert await store.hold_cursor("ethereum", "proc-b", 30)
    await store.advance("ethereum", {"block": 5}, [], [], NOW, holder="proc-b")
    with pytest.raises(CursorTaken):
        await store.advance("ethereum", {"block": 2}, [event], [match], NOW, holder="proc-a")
    with pytest.raises(CursorTaken):  # nobody holds it: no write either
        await store.advance("polygon", {"block": 2}, [event], [match], NOW, holder="proc-a")
    assert await store.get_cursor("ethereum") == {"block": 5}
    assert await store.get_cursor("polygon") is None
    assert await store.monitor_events("mon_a") == []
    assert await store.deliveries_of("ep_a") == []
    ids = await store.advance("ethereum", {"block": 6}, [event], [match], NOW, holder="proc-b")
    assert [d.event_id for d in await store.deliveries_of("ep_a")] == ids


async def test_monitor_events_newest_first_filtered_by_tx_and_address(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    await store.put_monitor(monitor("mon_a"))
    steps = [transfer("mon_a", 1, 1), transfer("mon_a", 1, 1, 2, kind="transfer.confirmed",
                                                  block=103),
             transfer("mon_a", 2, 2), transfer("mon_b", 1, 1)]
    ids = []
    for i, (event, match) in enumerate(steps):  # one step each: a clear order
        ids += await store.advance("ethereum", {"block": i}, [event], [match], NOW + i * S)
    newest = (await store.monitor_events("mon_a"))[0]
    assert (newest.match, newest.event_id, newest.event_type, newest.accepted_at,
            newest.data) == (steps[2][1], ids[2], "transfer.detected", NOW + 2 * S,
                             steps[2][0].data)

    def found(entries: list[MonitorEvent]) -> list[str]:
        return [e.event_id for e in entries]
    tx1, a1, a2 = f"0X{1:064X}", f"0x{1:040X}", f"0x{2:040x}"  # either case finds them
    assert found(await store.monitor_events("mon_a")) == [ids[2], ids[1], ids[0]]
    assert found(await store.monitor_events("mon_a", limit=2)) == [ids[2], ids[1]]
    assert found(await store.monitor_events("mon_a", limit=0)) == []
    assert found(await store.monitor_events("mon_a", tx_hash=tx1)) == [ids[1], ids[0]]
    assert found(await store.monitor_events("mon_a", tx_hash=tx1, limit=1)) == [ids[1]]
    assert found(await store.monitor_events("mon_a", address=a1)) == [ids[1], ids[0]]
    assert found(await store.monitor_events("mon_a", address=a2)) == [ids[2], ids[1]]
    assert found(await store.monitor_events("mon_a", address=a2, limit=1)) == [ids[2]]
    assert found(await store.monitor_events("mon_a", tx_hash=tx1, address=a2)) == [ids[1]]
    assert found(await store.monitor_events("mon_a", f"0x{3:064x}")) == []
    assert found(await store.monitor_events("mon_a", address=f"0x{3:040x}")) == []
    assert found(await store.monitor_events("mon_b")) == [ids[3]]
    assert await store.monitor_events("mon_nope") == []
    confirmed = (await store.monitor_events("mon_a", tx_hash=tx1))[0]
    assert confirmed.match == steps[1][1] and confirmed.event_type == "transfer.confirmed"
    assert confirmed.accepted_at == NOW + S


async def test_monitor_events_page_by_page_with_before(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    await store.put_monitor(monitor("mon_a"))
    await store.put_monitor(monitor("mon_b"))
    # one event each (its own kind keeps the idempotency keys apart); tx and addresses repeat
    steps = [transfer("mon_a", 1 + i % 2, 1 + i % 3, kind=f"k{i}", block=100 + i)
             for i in range(7)]
    ids = []
    for i, (event, match) in enumerate(steps):
        ids += await store.advance("ethereum", {"block": i}, [event], [match], NOW + i * S)
    theirs, their_match = transfer("mon_b", 1, 1)
    other = await store.advance("ethereum", {"block": 9}, [theirs], [their_match], NOW + 9 * S)

    async def pages(size: int, **filters: str) -> list[list[str]]:
        out: list[list[str]] = []
        before = None
        while True:
            page = [e.event_id for e in await store.monitor_events(
                "mon_a", limit=size, before=before, **filters)]
            if not page:
                return out
            out.append(page)
            before = page[-1]

    newest_first = ids[::-1]
    assert await pages(3) == [newest_first[0:3], newest_first[3:6], newest_first[6:]]
    tx1 = f"0x{1:064x}"  # transfers 0, 2, 4, 6
    assert await pages(2, tx_hash=tx1) == [[ids[6], ids[4]], [ids[2], ids[0]]]
    a1 = f"0x{1:040x}"  # transfers 0, 3, 6
    assert await pages(1, address=a1) == [[ids[6]], [ids[3]], [ids[0]]]
    assert await pages(5, tx_hash=tx1, address=a1) == [[ids[6], ids[0]]]
    assert await store.monitor_events("mon_a", before=ids[0]) == []  # the oldest: nothing
    for stranger in (other[0], "evt_" + "0" * 16, "nonsense"):
        with pytest.raises(ValueError, match="not in the history of mon_a"):
            await store.monitor_events("mon_a", before=stranger)


async def test_endpoint_monitors_names_who_sends_there(store: Store) -> None:
    for ep in (endpoint("ep_a"), endpoint("ep_b")):
        await store.put_endpoint(ep)
    for i in range(4):
        await store.put_monitor(monitor(f"mon_{i}", endpoint_id="ep_a" if i != 2 else "ep_b"))
    assert await store.endpoint_monitors("ep_a") == ["mon_0", "mon_1", "mon_3"]
    assert await store.endpoint_monitors("ep_a", 2) == ["mon_0", "mon_1"]
    assert await store.endpoint_monitors("ep_b") == ["mon_2"]
    assert await store.endpoint_monitors("ep_none") == []
    await store.delete_monitor("mon_2")
    assert await store.endpoint_monitors("ep_b") == []


async def test_monitors_cursor_and_history_survive_a_reopen(
        store_factory: StoreFactory) -> None:
    first = store_factory()
    await first.open()
    await first.put_endpoint(endpoint("ep_a"))
    await first.put_monitor(monitor("mon_a"))
    event, match = transfer("mon_a", 1, 1)
    ids = await first.advance("ethereum", {"block": 100}, [event], [match], NOW)
    before = (await first.list_monitors(), await first.monitors_version(),
              await first.monitor_events("mon_a"))
    await first.close()

    second = store_factory()
    await second.open()
    try:
        after = (await second.list_monitors(), await second.monitors_version(),
                 await second.monitor_events("mon_a"))
        assert after == before and before[1] > 0
        assert await second.get_cursor("ethereum") == {"block": 100}
        assert await second.advance("ethereum", {"block": 100}, [event], [match], NOW) == ids
        assert len(await second.deliveries_of("ep_a")) == 1
    finally:
        await second.close()
