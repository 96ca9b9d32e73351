"""`core.leases.Lease` (on the cursor leases of `service.follow.CursorLeases`) on a real
Redis: two processes (two stores, two leases) wanting to follow one chain; one holds it at a
time, a clean stop hands over at once, a dead holder's lease runs out, and a store that stops
answering makes a holder stop by its own clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from core.leases import Lease
from service import CursorTaken, StoreError
from service.follow import CursorLeases
from service.store.redis import RedisStore
from tests.support.redis_server import RedisKeyspace

pytestmark = pytest.mark.timeout(30)
TTL = 0.6


@pytest.fixture
async def stores(redis_keyspace: RedisKeyspace) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    pair = (RedisStore(redis_keyspace.url, prefix=redis_keyspace.prefix),
            RedisStore(redis_keyspace.url, prefix=redis_keyspace.prefix))
    for store in pair:
        await store.open()
    yield pair
    for store in pair:
        await store.close()


@contextlib.asynccontextmanager
async def kept(lease: Lease) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(lease.keep())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_one_of_two_holds_and_a_clean_stop_hands_over_at_once(
        stores: tuple[RedisStore, RedisStore]) -> None:
    a = Lease(CursorLeases(stores[0]), "chain:eth", "chain eth", ttl=30)
    b = Lease(CursorLeases(stores[1]), "chain:eth", "chain eth", ttl=30)
    async with kept(a) as keeping_a:
        await asyncio.wait_for(a.gained(), 5)
        assert not await b.renew() and holds(a) and not holds(b)
        keeping_a.cancel()  # a stops cleanly: lets go
        with contextlib.suppress(asyncio.CancelledError):
            await keeping_a
    assert not holds(a)
    assert await b.renew() and holds(b)  # at once, not 30 s later


async def test_a_dead_holders_lease_runs_out_and_fences_its_writes(
        stores: tuple[RedisStore, RedisStore]) -> None:
    dead = Lease(CursorLeases(stores[0]), "chain:eth", "chain eth", ttl=TTL)
    assert await dead.renew()  # then never again, like a process killed with -9
    alive = Lease(CursorLeases(stores[1]), "chain:eth", "chain eth", ttl=TTL)
    assert not await alive.renew()
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with kept(alive):
        await asyncio.wait_for(alive.gained(), 5)
    assert loop.time() - started >= TTL * 0.5  # it waited for the lease to run out
    # the dead one, resumed, believes nothing by its own clock: the lease ran out there too
    assert not holds(dead)
    with pytest.raises(CursorTaken):
        await stores[0].advance("chain:eth", {"next": 9}, [], [], datetime.now(UTC),
                                holder=dead.holder)


async def test_a_store_that_stops_answering_ends_the_lease_by_our_own_clock() -> None:
    class Flaky:
        answers = True

        async def hold_cursor(self, name: str, holder: str, ttl: float) -> bool:
            if not self.answers:
                raise StoreError("redis store: hold_cursor failed: connection refused")
            return True

        async def let_go_cursor(self, name: str, holder: str) -> None:
            raise StoreError("redis store: let_go_cursor failed: connection refused")

    now = [100.0]
    store = Flaky()
    lease = Lease(CursorLeases(store), "chain:eth", "chain eth", ttl=10, clock=lambda: now[0])
    assert await lease.renew() and holds(lease)
    store.answers = False
    now[0] += 5
    assert await lease.renew()  # not answered: still ours until it would have run out
    now[0] += 4.5  # 9.5 s after the last renewal: past our margin (0.9 of the ttl)
    assert not await lease.renew() and not holds(lease)
    store.answers = True
    assert await lease.renew() and holds(lease)
    await lease.let_go()  # a store error while letting go is not raised
    assert not holds(lease)


def holds(lease: Lease) -> bool:
    """`lease.held` read afresh (a property mypy would otherwise narrow once)."""
    return lease.held
