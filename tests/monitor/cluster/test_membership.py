"""Cluster membership on a real redis-server: instances in different locations see each
other and the `crypitor_cluster_members` gauge; a clean stop leaves at once, a killed
instance is gone after its lease; after a Redis restart that lost the data they join again.
Waits are bounded by the test's deadline, never by a timing threshold."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest

from monitor.cluster import ClusterUnavailable, Membership
from tests.support.redis_server import RedisKeyspace, RedisServers, fresh_prefix

LEASE = 1.0


REGISTRIES: dict[int, CollectorRegistry] = {}  # each member's own, by id(member)


def member(url: str, prefix: str, instance: str, location: str) -> Membership:
    registry = CollectorRegistry()
    m = Membership(url, location=location, instance=instance, lease=LEASE,
                   registry=registry, prefix=prefix)
    REGISTRIES[id(m)] = registry
    return m


def gauge(m: Membership, location: str) -> float | None:
    return REGISTRIES[id(m)].get_sample_value("crypitor_cluster_members",
                                             {"location": location})


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    while not await check():
        await asyncio.sleep(0.05)


async def names(m: Membership) -> set[str]:
    return {x.instance for x in await m.members()}


@contextlib.asynccontextmanager
async def cluster(url: str, prefix: str) -> AsyncIterator[list[Membership]]:
    ms = [member(url, prefix, "eu-1", "eu"), member(url, prefix, "eu-2", "eu"),
          member(url, prefix, "us-1", "us")]
    try:
        yield ms
    finally:
        for m in ms:
            await m.close()
            REGISTRIES.pop(id(m))


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@pytest.mark.timeout(30)
async def test_members_see_each_other_and_the_gauge(redis_keyspace: RedisKeyspace) -> None:
    async with cluster(redis_keyspace.url, redis_keyspace.prefix) as ms:
        for m in ms:
            await m.beat()
        seen = await ms[0].beat()
        assert {(x.instance, x.location) for x in seen} == \
            {("eu-1", "eu"), ("eu-2", "eu"), ("us-1", "us")}
        assert all(x.last_seen.tzinfo is not None for x in seen)
        assert await names(ms[2]) == {"eu-1", "eu-2", "us-1"}
        assert gauge(ms[0], "eu") == 2 and gauge(ms[0], "us") == 1
        text = generate_latest(REGISTRIES[id(ms[0])]).decode()
        assert 'crypitor_cluster_members{location="eu"} 2.0' in text
        assert 'crypitor_cluster_members{location="us"} 1.0' in text


@pytest.mark.timeout(30)
async def test_a_clean_stop_leaves_at_once(redis_keyspace: RedisKeyspace) -> None:
    async with cluster(redis_keyspace.url, redis_keyspace.prefix) as ms:
        tasks = [asyncio.create_task(m.run()) for m in ms]
        try:
            await until(lambda: _has(ms[0], {"eu-1", "eu-2", "us-1"}))
            assert _joined(ms[2])
            await _stop(tasks[2])
            assert not _joined(ms[2])
            assert await names(ms[0]) == {"eu-1", "eu-2"}  # at once: no lease to wait for
            await ms[0].beat()
            assert gauge(ms[0], "us") == 0  # emptied: 0, not the last value
            assert gauge(ms[0], "eu") == 2
        finally:
            for t in tasks:
                await _stop(t)


@pytest.mark.timeout(30)
async def test_a_killed_member_is_gone_after_its_lease(redis_keyspace: RedisKeyspace) -> None:
    async with cluster(redis_keyspace.url, redis_keyspace.prefix) as ms:
        tasks = [asyncio.create_task(ms[0].run()), asyncio.create_task(ms[1].run()),
                 asyncio.create_task(ms[2].keep())]  # keep(): no leaving when cancelled
        try:
            await until(lambda: _has(ms[0], {"eu-1", "eu-2", "us-1"}))
            await _stop(tasks[2])  # as a kill -9: it simply stops beating
            await until(lambda: _lacks(ms[0], "us-1"))
            await until(lambda: _gauge_is(ms[0], "us", 0))
            assert gauge(ms[0], "eu") == 2
        finally:
            for t in tasks:
                await _stop(t)


@pytest.mark.timeout(60)
async def test_members_join_again_after_redis_restarts(
        redis_servers: RedisServers, caplog: pytest.LogCaptureFixture) -> None:
    server = redis_servers.start()
    prefix = fresh_prefix()
    caplog.set_level(logging.INFO, logger="crypitor.cluster")
    async with cluster(server.url, prefix) as ms:
        tasks = [asyncio.create_task(m.run()) for m in ms]
        try:
            await until(lambda: _has(ms[0], {"eu-1", "eu-2", "us-1"}))
            server.stop()
            with pytest.raises(ClusterUnavailable):
                await ms[0].members()
            await until(lambda: _logged(caplog, "cannot reach Redis", len(ms)))
            server.start()
            # a Redis that lost its data (and its script cache): everyone beats in again
            client = redis.Redis.from_url(server.url, socket_timeout=5)
            client.flushdb()
            client.close()
            await until(lambda: _has(ms[0], {"eu-1", "eu-2", "us-1"}))
            await until(lambda: _logged(caplog, "Redis reachable again", len(ms)))
            # once per outage, however many beats failed meanwhile
            assert _count(caplog, "cannot reach Redis") == len(ms)
        finally:
            for t in tasks:
                await _stop(t)


def _joined(m: Membership) -> bool:
    return m.joined


async def _has(m: Membership, expected: set[str]) -> bool:
    return await names(m) == expected


async def _lacks(m: Membership, instance: str) -> bool:
    return instance not in await names(m)


async def _gauge_is(m: Membership, location: str, value: float) -> bool:
    await m.beat()
    return gauge(m, location) == value


def _count(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(text in r.getMessage() for r in caplog.records)


async def _logged(caplog: pytest.LogCaptureFixture, text: str, times: int) -> bool:
    return _count(caplog, text) >= times
