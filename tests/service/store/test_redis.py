"""What only the Redis store promises: several processes share one queue through the consumer
group, a dead process's work is taken over after its lease, and acknowledged writes survive a
crash of redis-server itself. Each "process" here is a RedisStore with its own connections.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from service import StoreError
from service.models import Attempt, Claim, DeliveryState, NewEvent, Verdict
from service.store.redis.codec import FORMAT
from service.store.redis.store import GROUP, RedisStore
from tests.support.net import free_port
from tests.support.redis_server import RedisKeyspace, RedisServers, fresh_prefix
from tests.support.stores import NOW, endpoint

pytestmark = pytest.mark.timeout(30)
S = timedelta(seconds=1)
Open = Callable[[], Awaitable[RedisStore]]


@pytest_asyncio.fixture
async def open_store(redis_keyspace: RedisKeyspace) -> AsyncIterator[Open]:
    """Opens stores ("processes") on the test's keyspace; closes them all at the end."""
    async with AsyncExitStack() as stack:
        async def start() -> RedisStore:
            store = RedisStore(redis_keyspace.url, prefix=redis_keyspace.prefix)
            await store.open()
            stack.push_async_callback(store.close)
            return store
        yield start


@pytest_asyncio.fixture
async def raw(redis_keyspace: RedisKeyspace) -> AsyncIterator[aioredis.Redis]:
    """A plain client, to look at the stream and sets without going through the store."""
    client = aioredis.Redis.from_url(redis_keyspace.url, decode_responses=True)
    yield client
    await client.aclose()


def attempt(claim: Claim, status: int = 200) -> Attempt:
    return Attempt(claim.delivery.attempts + 1, NOW, 0.1, status)


async def pending_by_consumer(raw: aioredis.Redis, prefix: str) -> dict[str, int]:
    summary = await raw.xpending(f"{prefix}:stream", GROUP)
    return {c["name"]: int(c["pending"]) for c in summary["consumers"]}


async def test_two_processes_share_claims_without_overlap(
        open_store: Open, raw: aioredis.Redis, redis_keyspace: RedisKeyspace) -> None:
    a, b = await open_store(), await open_store()
    assert a.consumer != b.consumer
    await a.put_endpoint(endpoint("ep_a"))
    await a.accept([NewEvent("t", i) for i in range(60)], NOW)
    taken: dict[str, list[Claim]] = {a.consumer: [], b.consumer: []}
    for _ in range(20):  # 60 deliveries, at least 14 per round: ends well before 20 rounds
        rounds = await asyncio.gather(a.claim(7, NOW, 30), b.claim(7, NOW, 30))
        if not any(rounds):
            break
        taken[a.consumer] += rounds[0]
        taken[b.consumer] += rounds[1]
    ids = [c.delivery.id for claims in taken.values() for c in claims]
    assert len(ids) == len(set(ids)) == 60
    assert all(taken.values())  # both processes got work
    # each lease is an entry in exactly its claimer's pending list
    assert await pending_by_consumer(raw, redis_keyspace.prefix) == {
        name: len(claims) for name, claims in taken.items()}
    for name, store in ((a.consumer, a), (b.consumer, b)):
        for claim in taken[name]:
            await store.settle(claim, attempt(claim), Verdict(DeliveryState.DELIVERED))
    assert await pending_by_consumer(raw, redis_keyspace.prefix) == {}
    assert await raw.xlen(f"{redis_keyspace.prefix}:stream") == 0  # settled entries are gone


async def test_a_dead_processes_claims_are_taken_over_after_the_lease(
        open_store: Open, raw: aioredis.Redis, redis_keyspace: RedisKeyspace) -> None:
    dying, survivor = await open_store(), await open_store()
    await survivor.put_endpoint(endpoint("ep_a"))
    await survivor.accept([NewEvent("t", i) for i in range(3)], NOW)
    lost = await dying.claim(10, NOW, 30)
    assert len(lost) == 3
    await dying.close()  # it never settles
    assert await survivor.claim(10, NOW + 29 * S, 30) == []
    taken = await survivor.claim(10, NOW + 30 * S, 30)
    assert [c.delivery.id for c in taken] == [c.delivery.id for c in lost]
    assert {c.lease_token for c in taken}.isdisjoint(c.lease_token for c in lost)
    # the group moved the entries, not a copy: same entry ids, now pending for the survivor
    assert await pending_by_consumer(raw, redis_keyspace.prefix) == {survivor.consumer: 3}
    entries = await raw.xpending_range(f"{redis_keyspace.prefix}:stream", GROUP, "-", "+", 10)
    assert all(e["times_delivered"] == 2 for e in entries)

    # the first worker was only slow: its late answer is recorded but decides nothing
    await survivor.settle(lost[0], attempt(lost[0], 500),
                          Verdict(DeliveryState.RETRYING, NOW + 3600 * S))
    await survivor.settle(taken[0], attempt(taken[0]), Verdict(DeliveryState.DELIVERED))
    view = await survivor.get_event(taken[0].event.id)
    assert view is not None
    ((delivery, attempts),) = view.deliveries
    assert delivery.state is DeliveryState.DELIVERED
    assert [a.status_code for a in attempts] == [500, 200]


async def test_the_due_set_moves_atomically_under_concurrent_claimers(
        open_store: Open, raw: aioredis.Redis, redis_keyspace: RedisKeyspace) -> None:
    stores = [await open_store() for _ in range(4)]
    await stores[0].put_endpoint(endpoint("ep_a"))
    await stores[0].accept([NewEvent("t", i) for i in range(200)], NOW)
    first = await stores[0].claim(200, NOW, 30)
    for i, claim in enumerate(first):  # every one waits in the delayed set, due at once later
        await stores[0].settle(claim, attempt(claim, 503),
                               Verdict(DeliveryState.RETRYING, NOW + (10 + i % 7) * S))
    assert await raw.zcard(f"{redis_keyspace.prefix}:due") == 200

    later = NOW + 60 * S
    calls = [stores[i % 4].claim(9, later, 30) for i in range(40)]  # room for 360
    claimed = [c.delivery.id for batch in await asyncio.gather(*calls) for c in batch]
    assert len(claimed) == len(set(claimed)) == 200
    assert await raw.zcard(f"{redis_keyspace.prefix}:due") == 0
    pending = await pending_by_consumer(raw, redis_keyspace.prefix)
    assert sum(pending.values()) == 200 and len(pending) > 1


async def test_a_disabled_endpoints_deliveries_wait_for_it(open_store: Open) -> None:
    store = await open_store()
    await store.put_endpoint(endpoint("ep_a"))
    ids = await store.accept([NewEvent("t", i) for i in range(3)], NOW)
    (leased,) = await store.claim(1, NOW, 30)
    await store.put_endpoint(endpoint("ep_a", disabled=True))
    assert await store.claim(10, NOW + 60 * S, 30) == []  # the expired lease is parked too
    assert {d.state for d in await store.deliveries_of("ep_a")} == {DeliveryState.PENDING}
    assert (await store.stats(NOW)).depth == 3

    await store.put_endpoint(endpoint("ep_a"))
    back = await store.claim(10, NOW + 60 * S, 30)
    assert [c.event.id for c in back] == ids  # in their own order, at their own due time
    assert all(c.delivery.next_attempt_at == NOW for c in back)
    await store.settle(leased, attempt(leased), Verdict(DeliveryState.DELIVERED))
    assert (await store.deliveries_of("ep_a"))[0].state is DeliveryState.PENDING  # stale


async def test_stats_show_the_consumer_groups_lag_and_pending(open_store: Open) -> None:
    """What an autoscaler reads: due deliveries no process has claimed (the group's lag in
    this design: they enter the stream when read) and those claimed but not settled."""
    first, second = await open_store(), await open_store()
    assert ((await first.stats(NOW)).due_unclaimed, (await first.stats(NOW)).leased) == (0, 0)
    await first.put_endpoint(endpoint("ep_a"))
    await first.accept([NewEvent("t", i) for i in range(5)], NOW)
    stats = await second.stats(NOW)
    assert (stats.depth, stats.due_unclaimed, stats.leased) == (5, 5, 0)
    claims = await first.claim(2, NOW, 30) + await second.claim(1, NOW, 30)
    stats = await first.stats(NOW)
    assert (stats.depth, stats.due_unclaimed, stats.leased) == (5, 2, 3)
    await first.settle(claims[0], attempt(claims[0]), Verdict(DeliveryState.DELIVERED))
    await second.settle(claims[2], attempt(claims[2], 500),
                        Verdict(DeliveryState.RETRYING, NOW + 60 * S))
    stats = await first.stats(NOW)
    assert (stats.depth, stats.due_unclaimed, stats.leased) == (4, 2, 1)
    later = await first.stats(NOW + 61 * S)  # the retry is due again by then
    assert (later.due_unclaimed, later.leased) == (3, 1)


async def test_acknowledged_writes_survive_a_crash_of_redis(
        redis_servers: RedisServers) -> None:
    server = redis_servers.start()
    prefix = fresh_prefix()
    store = RedisStore(server.url, prefix=prefix, timeout=2)
    await store.open()
    await store.put_endpoint(endpoint("ep_a"))
    ids = await store.accept([NewEvent("t", {"i": i}, f"key-{i}") for i in range(4)], NOW)
    retried, leased = await store.claim(2, NOW, 30)
    await store.settle(retried, attempt(retried, 502),
                       Verdict(DeliveryState.RETRYING, NOW + 60 * S, endpoint_failing_since=NOW))
    before = ([await store.get_event(i) for i in ids], await store.deliveries_of("ep_a"),
              await store.list_endpoints(), await store.stats(NOW))

    server.stop(signal.SIGKILL)  # no shutdown save: only what the AOF fsynced is left
    assert await store.ping() is False
    with pytest.raises(StoreError) as failed:
        await store.accept([NewEvent("t", None)], NOW)
    assert failed.value.__cause__ is not None
    await store.close()

    server.start()  # same port, same directory
    again = RedisStore(server.url, prefix=prefix)
    await again.open()
    try:
        assert ([await again.get_event(i) for i in ids], await again.deliveries_of("ep_a"),
                await again.list_endpoints(), await again.stats(NOW)) == before
        assert await again.accept([NewEvent("t", None, "key-2")], NOW + S) == [ids[2]]
        due = await again.claim(10, NOW + 10 * S, 3600)  # the other two; the lease holds
        assert len(due) == 2 and leased.delivery.id not in {c.delivery.id for c in due}
        due = await again.claim(10, NOW + 61 * S, 30)
        assert {c.delivery.id for c in due} == {retried.delivery.id, leased.delivery.id}
    finally:
        await again.close()
        server.stop()


async def test_an_unreachable_redis_is_a_store_error() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=2)
    try:
        assert await store.ping() is False
        with pytest.raises(StoreError, match="open failed"):
            await store.open()
    finally:
        await store.close()


async def test_keys_stay_under_the_prefix_and_idempotency_keys_expire(
        open_store: Open, raw: aioredis.Redis, redis_keyspace: RedisKeyspace) -> None:
    before = {str(key) for key in await raw.keys()}  # the server is shared by the session
    store = await open_store()
    await store.put_endpoint(endpoint("ep_a"))
    await store.accept([NewEvent("t", 1, "k")], NOW)
    await store.claim(1, NOW, 30)
    assert 0 < await raw.ttl(f"{redis_keyspace.prefix}:idem:k") <= 24 * 3600
    made = {str(key) for key in await raw.keys()} - before
    assert made and all(key.startswith(f"{redis_keyspace.prefix}:") for key in made)
    other_prefix = fresh_prefix()
    other = RedisStore(redis_keyspace.url, prefix=other_prefix)
    await other.open()
    try:
        assert await other.list_endpoints() == [] and await other.claim(10, NOW, 30) == []
    finally:
        await other.close()
        await raw.delete(f"{other_prefix}:stream", f"{other_prefix}:format")


async def test_work_of_a_forgotten_consumer_is_not_lost(
        open_store: Open, raw: aioredis.Redis, redis_keyspace: RedisKeyspace,
        monkeypatch: pytest.MonkeyPatch) -> None:
    stream = f"{redis_keyspace.prefix}:stream"
    idle, busy = await open_store(), await open_store()
    await idle.put_endpoint(endpoint("ep_a"))
    await idle.accept([NewEvent("t", i) for i in range(3)], NOW)
    (settled,) = await idle.claim(1, NOW, 30)
    await idle.settle(settled, attempt(settled), Verdict(DeliveryState.DELIVERED))
    lost = await busy.claim(10, NOW, 30)
    monkeypatch.setattr("service.store.redis.store.IDLE_CONSUMER_MS", -1)
    assert {c["name"] for c in await raw.xinfo_consumers(stream, GROUP)} == {
        idle.consumer, busy.consumer}
    await open_store()  # start-up forgets consumers with nothing pending, and only those
    assert [c["name"] for c in await raw.xinfo_consumers(stream, GROUP)] == [busy.consumer]
    await raw.xgroup_delconsumer(stream, GROUP, busy.consumer)  # by hand: its PEL goes too
    assert await idle.claim(10, NOW + 29 * S, 30) == []
    back = await idle.claim(10, NOW + 31 * S, 30)
    assert sorted(c.delivery.id for c in back) == sorted(c.delivery.id for c in lost)


async def test_a_redis_that_may_lose_writes_is_named_at_start(
        open_store: Open, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "service.store.redis.store"]

    await open_store()
    assert warnings() == []  # the fixture's server is configured as production should be
    await raw.config_set("appendfsync", "everysec")
    try:
        await open_store()
    finally:
        await raw.config_set("appendfsync", "always")
    assert warnings() == [
        "redis appendfsync is 'everysec', not 'always': acknowledged events may be lost"]


async def test_a_keyspace_from_before_the_format_key_is_read_and_stamped(
        open_store: Open, raw: aioredis.Redis, redis_keyspace: RedisKeyspace) -> None:
    """Builds before the format version wrote the same records and no `format` key."""
    first = await open_store()
    await first.put_endpoint(endpoint("ep_a"))
    (event_id,) = await first.accept([NewEvent("t", 1)], NOW)
    key = f"{redis_keyspace.prefix}:format"
    assert await raw.get(key) == str(FORMAT)
    await raw.delete(key)  # as the previous build left the keyspace
    store = await open_store()
    assert await raw.get(key) == str(FORMAT)
    assert [e.id for e in await store.list_endpoints()] == ["ep_a"]
    view = await store.get_event(event_id)
    assert view is not None and [d.endpoint_id for d, _ in view.deliveries] == ["ep_a"]
    await raw.hset(f"{redis_keyspace.prefix}:ep:ep_a", "v", str(FORMAT))  # says it: read too
    assert (await store.get_endpoint("ep_a") or pytest.fail()).id == "ep_a"


async def test_a_keyspace_of_an_unknown_format_is_refused_by_name(
        raw: aioredis.Redis, redis_keyspace: RedisKeyspace) -> None:
    key = f"{redis_keyspace.prefix}:format"
    await raw.set(key, "999")
    store = RedisStore(redis_keyspace.url, prefix=redis_keyspace.prefix)
    try:
        with pytest.raises(StoreError) as caught:
            await store.open()
    finally:
        await store.close()
    assert str(caught.value) == (
        f"redis store: the keyspace {key} has format version 999; this build knows versions 1"
        " (written by a newer build? run that one, or move the data away to start afresh)")
    assert await raw.keys(f"{redis_keyspace.prefix}:*") == [key]  # nothing else written


async def test_a_record_of_an_unknown_format_is_refused_not_misread(
        open_store: Open, raw: aioredis.Redis, redis_keyspace: RedisKeyspace) -> None:
    store = await open_store()
    await store.put_endpoint(endpoint("ep_a"))
    (event_id,) = await store.accept([NewEvent("t", 1)], NOW)
    prefix = redis_keyspace.prefix
    await raw.hset(f"{prefix}:ep:ep_a", "v", "999")  # as a newer build would write it
    with pytest.raises(StoreError, match=r"^redis store: endpoint ep_a has format version 999;"
                                         r" this build knows versions 1 "):
        await store.get_endpoint("ep_a")
    with pytest.raises(StoreError, match=r"^redis store: endpoint ep_a has format version 999"):
        await store.list_endpoints()
    await raw.hset(f"{prefix}:ev:{event_id}", "v", "999")
    with pytest.raises(StoreError, match=rf"^redis store: event {event_id} has format version"):
        await store.get_event(event_id)
    await raw.hdel(f"{prefix}:ev:{event_id}", "v")
    (delivery_key,) = [k for k in await raw.keys(f"{prefix}:dl:*")]
    await raw.hset(delivery_key, "v", "999")
    with pytest.raises(StoreError, match=r"^redis store: delivery msg_\S+ has format version"):
        await store.get_event(event_id)
