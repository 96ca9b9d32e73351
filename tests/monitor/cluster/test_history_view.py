"""The cluster's uptime history and results view on a real redis-server: every instance adds its
own probes and reads everyone's; counts survive a Redis outage at a flush; the view marks a
location stale after 2 intervals + the lease and keeps this instance's results when Redis is
down."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from monitor.cluster import ClusterHistory, ClusterView, connect, latest_field
from monitor.config import TargetConfig
from monitor.runtime import TargetState
from probes.base import ProbeResult
from tests.support.redis_server import RedisKeyspace, RedisServers, fresh_prefix

NOW = 1_750_000_000.0  # unix time the tests read
HOUR, DAY = 3600, 86400


def clock(at: float) -> Callable[[], float]:
    return lambda: at


@pytest.mark.timeout(30)
async def test_every_instance_adds_its_probes_and_reads_the_cluster_s(
        redis_keyspace: RedisKeyspace) -> None:
    redis = connect(redis_keyspace.url)
    try:
        eu = ClusterHistory(redis, redis_keyspace.prefix, clock(NOW))
        us = ClusterHistory(redis, redis_keyspace.prefix, clock(NOW))
        eu.record("a", True, NOW - 60)
        eu.record("a", False, NOW - 2 * DAY)  # in 7d and 30d, not 24h
        us.record("a", True, NOW - 10)
        us.record("b", False, NOW - 20 * DAY)  # 30d only
        await eu.flush()
        await us.flush()
        us.record("a", True, NOW - 5)  # not flushed yet: counted by its own instance
        expected = {"a": {"24h": 1.0, "7d": round(3 / 4, 6), "30d": round(3 / 4, 6)},
                    "b": {"24h": None, "7d": None, "30d": 0.0}}
        assert await us.ratios(["a", "b"]) == expected  # read field by field
        many = [f"x{i}" for i in range(100)]
        assert (await us.ratios(["a", "b", *many]))["a"] == expected["a"]  # whole read
        eu_view = await eu.ratios(["a"])
        assert eu_view["a"]["24h"] == 1.0 and eu_view["a"]["7d"] == round(2 / 3, 6)
        assert await eu.ratios(["none"]) == {"none": {"24h": None, "7d": None, "30d": None}}
    finally:
        await redis.aclose()


@pytest.mark.timeout(60)
async def test_counts_are_kept_while_redis_is_unreachable(redis_servers: RedisServers) -> None:
    server = redis_servers.start()
    prefix = fresh_prefix()
    redis = connect(server.url, timeout=1.0)
    try:
        history = ClusterHistory(redis, prefix, clock(NOW))
        history.record("a", True, NOW - 60)
        server.stop()
        await history.flush()  # fails: kept
        history.record("a", False, NOW - 30)
        assert (await history.ratios(["a"]))["a"]["24h"] == 0.5  # its own, Redis down
        server.start()
        await history.flush()
        other = ClusterHistory(redis, prefix, clock(NOW))
        assert (await other.ratios(["a"]))["a"] == {"24h": 0.5, "7d": 0.5, "30d": 0.5}
        await history.flush()  # nothing pending: nothing added twice
        assert (await other.ratios(["a"]))["a"]["24h"] == 0.5
    finally:
        await redis.aclose()


def result(at: datetime, success: bool = True) -> ProbeResult:
    return ProbeResult(success, 0.1, at)


@pytest.mark.timeout(30)
async def test_the_view_merges_locations_marks_stale_ones_and_keeps_its_own(
        redis_keyspace: RedisKeyspace) -> None:
    now = datetime(2025, 1, 1, 12, tzinfo=UTC)
    redis = connect(redis_keyspace.url)
    try:
        key = f"{redis_keyspace.prefix}:latest"
        docs = {latest_field("t", "us"): (now - timedelta(seconds=5), False, "us-1"),
                latest_field("t", "ap"): (now - timedelta(seconds=71), False, "ap-1"),
                latest_field("gone", "us"): (now, True, "us-1")}
        mapping: dict[str | bytes, str | bytes] = {
            f: json.dumps({"instance": inst, "result": result(at, ok).as_json()})
            for f, (at, ok, inst) in docs.items()}
        mapping |= {"junk": "x", "t\x1fbad": "{"}
        await redis.hset(key, mapping=mapping)  # type: ignore[arg-type]
        view = ClusterView(redis, instance="eu-1", location="eu", lease=10.0,
                           prefix=redis_keyspace.prefix, clock=lambda: now, ttl=0.0)
        state = TargetState(TargetConfig("t", "http", "http://x/", 30.0, 5.0))
        state.record(result(now - timedelta(seconds=1)))  # ours, not published yet
        seen = (await view.targets([state]))["t"]
        assert list(seen.locations) == ["ap", "eu", "us"]
        assert seen.locations["eu"].instance == "eu-1" and not seen.locations["eu"].stale
        assert seen.locations["ap"].stale  # 71 s > 2 * 30 s + 10 s
        assert not seen.locations["us"].stale
        assert seen.up is False  # us, fresh, sees it down
        assert seen.last is not None and seen.last.started_at == now - timedelta(seconds=1)
        await redis.hdel(key, latest_field("t", "us"))
        seen = (await view.targets([state]))["t"]
        assert seen.up is True  # ap's down is stale: it does not count
    finally:
        await redis.aclose()
