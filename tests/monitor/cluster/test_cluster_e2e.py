"""The monitor cluster end to end: real `crypitor run` processes on a real redis-server,
probing a real HTTP target server and alerting to the fake Telegram.

- three instances in one location and one in another share the targets: one probe per
  target per interval per location; a `kill -9`'d instance's targets are probed again within
  lease + 2 intervals; a joining instance takes its share without gap or double probe;
- an outage gives exactly one FIRING and one RESOLVED, also when the alerting leader is
  killed mid-outage, and only one bot polls Telegram;
- at quorum 2 a target failing from one location only sends nothing, while that location's
  `probe_success` shows it; failing from both, the message names both;
- a silence made on one instance mutes all;
- Redis restarted mid-outage: no notification lost or repeated, probing goes on;
- the cluster's Redis behind Sentinel failed over: probing and alerting go on.

The bound on a failover (lease + 2 intervals) is the protocol's promise, asserted with one
extra second for a loaded machine's scheduling.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.fake_telegram import FakeTelegram
from tests.support.monitor_cluster import (
    Cluster,
    ClusterSpec,
    TargetServer,
    gaps,
    serve_targets,
    until,
)
from tests.support.redis_sentinel import SentinelGroup
from tests.support.redis_server import RedisServer, RedisServers

# one at a time on one worker: each runs several processes and times a failover
pytestmark = [pytest.mark.timeout(240), pytest.mark.xdist_group("cluster-e2e")]
SLACK = 1.0  # seconds of scheduling noise allowed on top of a protocol bound


@pytest.fixture
async def targets() -> AsyncIterator[TargetServer]:
    async with serve_targets() as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


def _spec(redis: RedisServer, targets: TargetServer, fake: FakeTelegram,
          names: tuple[str, ...], **kw: object) -> ClusterSpec:
    return ClusterSpec(redis.url, names, targets.url, fake.url, **kw)  # type: ignore[arg-type]


def _messages(fake: FakeTelegram, word: str, about: str) -> list[str]:
    return [s.text for s in fake.sent if word in s.text and about in s.text]


def _check_once_per_interval(targets: TargetServer, names: tuple[str, ...], locations:
                             tuple[str, ...], since: float, until_: float,
                             interval: float) -> None:
    for name in names:
        for location in locations:
            times = targets.times(name, location, since, until_)
            assert len(times) >= 2, (name, location, times)
            for gap in gaps(times):  # no double probe, no missed interval
                assert 0.5 * interval < gap < 1.5 * interval, (name, location, gaps(times))


async def test_targets_shared_once_per_location_with_failover_and_join(
        tmp_path: Path, redis_servers: RedisServers, targets: TargetServer,
        fake_telegram: FakeTelegram, http: aiohttp.ClientSession) -> None:
    redis = redis_servers.start()
    names = tuple(f"t{i:02d}" for i in range(12))
    spec = _spec(redis, targets, fake_telegram, names, interval=2.0, lease=3.0)
    cluster = Cluster(spec, tmp_path, fake_telegram.token)
    eu = [cluster.add("eu", f"eu-{i}") for i in range(3)]
    cluster.add("us", "us-0")
    try:
        await cluster.start(http)
        await asyncio.sleep(3 * spec.interval)  # every instance saw every other
        t0 = time.monotonic()
        await asyncio.sleep(5 * spec.interval)
        _check_once_per_interval(targets, names, ("eu", "us"), t0, time.monotonic(),
                                 spec.interval)
        owned = [await i.metric(http, "crypitor_cluster_owned_targets") for i in eu]
        assert sum(o or 0 for o in owned) == len(names) and all(owned), owned

        killed_at = time.monotonic()
        eu[0].kill()
        await asyncio.sleep(spec.lease + 4 * spec.interval)
        bound = spec.lease + 2 * spec.interval + SLACK
        for name in names:
            times = targets.times(name, "eu", killed_at - spec.interval)
            assert max(gaps(times)) <= bound, (name, gaps(times))
        t1 = time.monotonic()
        await asyncio.sleep(3 * spec.interval)
        _check_once_per_interval(targets, names, ("eu", "us"), t1, time.monotonic(),
                                 spec.interval)

        joined = cluster.add("eu", "eu-3")
        t2 = time.monotonic()
        await cluster.start(http, joined)
        await asyncio.sleep(4 * spec.interval)
        _check_once_per_interval(targets, names, ("eu", "us"), t2, time.monotonic(),
                                 spec.interval)
        assert (await joined.metric(http, "crypitor_cluster_owned_targets") or 0) > 0

        # one view: any instance lists every target from both locations
        status, body = await joined.get(http, "/api/v1/targets")
        assert status == 200
        listed = {t["name"]: t for t in json.loads(body)}
        assert set(listed) == set(names)
        assert all({"eu", "us"} <= set(t["locations"]) for t in listed.values()), listed
        assert 'crypitor_cluster_members{location="eu"} 3.0' in (
            await joined.get(http, "/metrics"))[1]
    finally:
        cluster.stop_all()
    assert not _messages(fake_telegram, "FIRING", ""), cluster.logs()


async def test_an_outage_is_sent_once_also_when_the_leader_is_killed_mid_outage(
        tmp_path: Path, redis_servers: RedisServers, targets: TargetServer,
        fake_telegram: FakeTelegram, http: aiohttp.ClientSession) -> None:
    redis = redis_servers.start()
    names = ("api", "rpc", "web")
    spec = _spec(redis, targets, fake_telegram, names, interval=1.0, lease=2.0)
    cluster = Cluster(spec, tmp_path, fake_telegram.token)
    for i in range(3):
        cluster.add("eu", f"eu-{i}")
    try:
        await cluster.start(http)
        leader = await cluster.leader(http)
        targets.fail("api")
        await until(lambda: _messages(fake_telegram, "FIRING", "api"), 30, "FIRING for api")

        async def marked_sent() -> bool:  # not killed in the instant between send and mark
            _, body = await leader.get(http, "/api/v1/notifications")
            return any(n["kind"] == "firing" and n["status"] == "sent"
                       for n in json.loads(body))

        await until(marked_sent, 30, "the FIRING marked sent")
        leader.kill()
        survivors = [i for i in cluster.instances if i is not leader]
        await cluster.leader(http, survivors)
        await asyncio.sleep(3 * spec.interval)  # the new leader looked at the outage
        targets.recover("api")
        await until(lambda: _messages(fake_telegram, "RESOLVED", "api"), 30,
                    "RESOLVED for api")
        await asyncio.sleep(5 * spec.interval)  # time for a duplicate to show up
    finally:
        cluster.stop_all()
    assert len(_messages(fake_telegram, "FIRING", "api")) == 1, cluster.logs()
    assert len(_messages(fake_telegram, "RESOLVED", "api")) == 1, cluster.logs()
    assert fake_telegram.conflicts == 0, "two bots polled Telegram at once"


async def test_quorum_two_ignores_one_location_and_names_both_when_both_fail(
        tmp_path: Path, redis_servers: RedisServers, targets: TargetServer,
        fake_telegram: FakeTelegram, http: aiohttp.ClientSession) -> None:
    redis = redis_servers.start()
    spec = _spec(redis, targets, fake_telegram, ("edge", "calm"), interval=1.0, lease=2.0,
                 quorum=2)
    cluster = Cluster(spec, tmp_path, fake_telegram.token)
    cluster.add("eu", "eu-0")
    us = cluster.add("us", "us-0")
    try:
        await cluster.start(http)
        targets.fail("edge", ["us"])
        async def edge_down_from_us() -> bool:
            return await us.metric(http, "probe_success",
                                   {"location": "us", "target": "edge"}) == 0.0

        await until(edge_down_from_us, 30, "us sees edge down", every=0.5)
        await asyncio.sleep(8 * spec.interval)  # far past failures times interval
        assert not _messages(fake_telegram, "FIRING", "edge"), cluster.logs()
        targets.fail("edge")  # now from eu too
        await until(lambda: _messages(fake_telegram, "FIRING", "edge"), 30, "FIRING")
        (text,) = _messages(fake_telegram, "FIRING", "edge")
        assert "eu" in text and "us" in text, text
        targets.recover("edge")
        await until(lambda: _messages(fake_telegram, "RESOLVED", "edge"), 30, "RESOLVED")
    finally:
        cluster.stop_all()


async def test_a_silence_made_on_one_instance_mutes_all(
        tmp_path: Path, redis_servers: RedisServers, targets: TargetServer,
        fake_telegram: FakeTelegram, http: aiohttp.ClientSession) -> None:
    redis = redis_servers.start()
    spec = _spec(redis, targets, fake_telegram, ("quiet", "loud"), interval=1.0, lease=2.0)
    cluster = Cluster(spec, tmp_path, fake_telegram.token)
    for i in range(2):
        cluster.add("eu", f"eu-{i}")
    try:
        await cluster.start(http)
        leader = await cluster.leader(http)
        (other,) = [i for i in cluster.instances if i is not leader]
        status, body = await other.post(http, "/api/v1/silences", {
            "matchers": {"target": "quiet"}, "ends_at": "2099-01-01T00:00:00Z",
            "comment": "maintenance of quiet", "created_by": "test"})
        assert status in (200, 201), body
        status, body = await leader.get(http, "/api/v1/silences")
        assert any(s["matchers"] == {"target": "quiet"} for s in json.loads(body)), body
        targets.fail("quiet")
        targets.fail("loud")
        await until(lambda: _messages(fake_telegram, "FIRING", "loud"), 30, "FIRING loud")
        await asyncio.sleep(4 * spec.interval)
        assert not _messages(fake_telegram, "FIRING", "quiet"), cluster.logs()
        for instance in cluster.instances:  # listed firing, and muted, everywhere
            status, body = await instance.get(http, "/api/v1/alerts")
            quiet = [a for a in json.loads(body) if a["target"] == "quiet"]
            assert quiet and quiet[0]["state"] == "firing" and quiet[0]["muted"], body
    finally:
        cluster.stop_all()


async def test_redis_restarted_mid_outage_loses_and_repeats_nothing(
        tmp_path: Path, redis_servers: RedisServers, targets: TargetServer,
        fake_telegram: FakeTelegram, http: aiohttp.ClientSession) -> None:
    redis = redis_servers.start()
    spec = _spec(redis, targets, fake_telegram, ("db", "ok"), interval=1.0, lease=2.0)
    cluster = Cluster(spec, tmp_path, fake_telegram.token)
    for i in range(2):
        cluster.add("eu", f"eu-{i}")
    try:
        await cluster.start(http)
        await cluster.leader(http)
        targets.fail("db")
        await until(lambda: _messages(fake_telegram, "FIRING", "db"), 30, "FIRING for db")
        redis.stop()
        down_at = time.monotonic()
        await asyncio.sleep(3 * spec.interval)
        # probing goes on without Redis
        assert len(targets.times("db", "eu", down_at)) >= 2
        redis.start()
        await cluster.leader(http)
        targets.recover("db")
        await until(lambda: _messages(fake_telegram, "RESOLVED", "db"), 60,
                    "RESOLVED for db")
        await asyncio.sleep(5 * spec.interval)
    finally:
        cluster.stop_all()
    assert len(_messages(fake_telegram, "FIRING", "db")) == 1, cluster.logs()
    assert len(_messages(fake_telegram, "RESOLVED", "db")) == 1, cluster.logs()


async def test_a_sentinel_failover_of_the_cluster_redis_keeps_probing_and_alerting(
        tmp_path: Path, sentinel_group: SentinelGroup, targets: TargetServer,
        fake_telegram: FakeTelegram, http: aiohttp.ClientSession) -> None:
    spec = ClusterSpec(sentinel_group.url, ("alpha", "bravo", "charlie"), targets.url,
                       fake_telegram.url, interval=1.0, lease=3.0)
    cluster = Cluster(spec, tmp_path, fake_telegram.token)
    for i in range(2):
        cluster.add("eu", f"eu-{i}")
    try:
        await cluster.start(http)
        await cluster.leader(http)
        targets.fail("alpha")
        await until(lambda: _messages(fake_telegram, "FIRING", "alpha"), 30, "FIRING alpha")
        sentinel_group.primary.stop(signal.SIGKILL)
        failed_over = time.monotonic()
        promoted = {r.port for r in sentinel_group.replicas}
        await until(lambda: sentinel_group.primary_port() in promoted, 60, "a promotion")
        targets.fail("bravo")  # an outage that begins after the failover is sent too
        await until(lambda: _messages(fake_telegram, "FIRING", "bravo"), 60, "FIRING bravo")
        assert len(targets.times("charlie", "eu", failed_over)) >= 3  # probing went on
        targets.recover("alpha")
        targets.recover("bravo")
        await until(lambda: len(_messages(fake_telegram, "RESOLVED", "")) >= 2, 60,
                    "both RESOLVED")
        await asyncio.sleep(4 * spec.interval)
    finally:
        cluster.stop_all()
    # the outbox and its marks wait for a replica (WAIT) before they count: nothing repeated
    assert len(_messages(fake_telegram, "FIRING", "alpha")) == 1, cluster.logs()
    assert len(_messages(fake_telegram, "FIRING", "bravo")) == 1, cluster.logs()
