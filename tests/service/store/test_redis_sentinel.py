"""The Redis store through Sentinel: it finds the primary, an accepted event is on a replica
before `accept` returns, a write no replica acknowledges is refused rather than acknowledged,
and a primary whose script cache is empty (a promoted replica) gets the scripts again.
"""

from __future__ import annotations

import signal

import pytest
import redis.asyncio as aioredis

from service import NotReplicated
from service.models import NewEvent
from service.store.redis import RedisStore
from tests.support.redis_sentinel import SentinelGroup
from tests.support.stores import NOW, endpoint

pytestmark = pytest.mark.timeout(60)


async def test_an_accepted_event_is_on_the_replica_when_accept_returns(
        sentinel_group: SentinelGroup) -> None:
    store = RedisStore(sentinel_group.url, prefix="s1")
    replicas = [aioredis.Redis(port=r.port, decode_responses=True)
                for r in sentinel_group.replicas]
    try:
        await store.open()
        await store.put_endpoint(endpoint("e1", "t"))
        [event_id] = await store.accept([NewEvent("t", {"n": 1})], NOW)
        # WAIT 1 answered: a replica has the write, no polling needed
        found = [await r.hget(f"s1:ev:{event_id}", "type") for r in replicas]
        assert "t" in found
    finally:
        for r in replicas:
            await r.aclose()
        await store.close()


async def test_a_write_no_replica_acknowledges_is_refused(
        sentinel_group: SentinelGroup) -> None:
    store = RedisStore(sentinel_group.url, prefix="s2")
    try:
        await store.open()
        await store.put_endpoint(endpoint("e1", "t"))
        for replica in sentinel_group.replicas:
            replica.stop(signal.SIGKILL)
        with pytest.raises(NotReplicated, match="no replica acknowledged the write"):
            await store.accept([NewEvent("t", {"n": 1}, idempotency_key="k")], NOW)
    finally:
        await store.close()


async def test_scripts_are_loaded_again_into_a_primary_that_lacks_them(
        sentinel_group: SentinelGroup) -> None:
    store = RedisStore(sentinel_group.url, prefix="s3")
    primary = aioredis.Redis(port=sentinel_group.primary.port)
    try:
        await store.open()
        await store.put_endpoint(endpoint("e1", "t"))
        await store.accept([NewEvent("t", {"n": 1})], NOW)
        await primary.script_flush()  # as a promoted replica's empty cache
        [event_id] = await store.accept([NewEvent("t", {"n": 2})], NOW)
        assert (await store.get_event(event_id)) is not None
    finally:
        await primary.aclose()
        await store.close()
