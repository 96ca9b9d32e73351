"""Probing shared across a cluster, end to end: in-process `Runtime`s on one real redis-server
and a real HTTP target server counting the probes per (target, location, grid slot). Exactly
one probe per target per slot per location; a killed instance's targets taken over; a joining
instance takes its share with no slot missed or probed twice; `locations` honoured; /metrics,
the API and the status page; Redis stopped mid-run."""

from __future__ import annotations

import contextlib
import functools
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest
import redis

from monitor.app import Runtime
from monitor.runtime import grid_offset, grid_slot
from tests.monitor.cluster.cluster_support import (
    INTERVAL,
    LEASE,
    Targets,
    kill,
    peers_are,
    runtime,
    until,
)
from tests.support.redis_server import RedisKeyspace, RedisServers, fresh_prefix

TARGETS = 12
EU_ONLY = (10, 11)  # `locations = ["eu"]`: never probed from us


@contextlib.asynccontextmanager
async def target_server() -> AsyncIterator[Targets]:
    targets = Targets()
    await targets.start()
    try:
        yield targets
    finally:
        await targets.stop()


@contextlib.asynccontextmanager
async def running(runtimes: list[Runtime]) -> AsyncIterator[list[Runtime]]:
    """Start them all; stop every one still running at the end."""
    try:
        for rt in runtimes:
            await rt.start()
        yield runtimes
    finally:
        for rt in runtimes:
            await rt.stop()


async def all_see(rts: list[Runtime], instances: set[str]) -> None:
    """Until each of `rts` counts exactly `instances` as its location's members."""
    for rt in rts:
        await until(functools.partial(peers_are, rt, instances), f"members {instances}")


def slot_now() -> int:
    """A slot number every target has passed by now (t0's grid; others differ by < 1)."""
    return grid_slot(time.time(), grid_offset("t0", INTERVAL), INTERVAL)


async def slots_pass(n: int) -> None:
    start = slot_now()
    await until(lambda: slot_now() >= start + n, f"{n} slots pass")


def expected(location: str) -> list[str]:
    return [f"t{i}" for i in range(TARGETS) if location == "eu" or i not in EU_ONLY]


def assert_once(targets: Targets, location: str, first: int, last: int,
                names: list[str] | None = None) -> None:
    """Every target probed exactly once from `location` in each slot first..last."""
    counts = targets.slots()
    wrong = {(name, k): counts[(name, location, k)]
             for name in (names or expected(location)) for k in range(first, last + 1)
             if counts[(name, location, k)] != 1}
    assert wrong == {}, f"probes per (target, slot) from {location} other than 1: {wrong}"


async def get(http: aiohttp.ClientSession, rt: Runtime, path: str) -> aiohttp.ClientResponse:
    resp = await http.get(f"http://{rt.config.monitor.listen}{path}")
    await resp.read()
    return resp


@pytest.mark.timeout(90)
async def test_one_probe_per_target_per_slot_per_location_and_one_view(
        tmp_path: Path, redis_keyspace: RedisKeyspace) -> None:
    url, prefix = redis_keyspace.url, redis_keyspace.prefix
    async with target_server() as targets:
        rts = [runtime(tmp_path, url, prefix, "eu", f"eu-{i}", targets, TARGETS, EU_ONLY)
               for i in (1, 2, 3)]
        rts.append(runtime(tmp_path, url, prefix, "us", "us-1", targets, TARGETS, EU_ONLY))
        async with running(rts):
            await all_see(rts[:3], {"eu-1", "eu-2", "eu-3"})
            await slots_pass(1)
            first = slot_now() + 1
            await slots_pass(5)
            last = slot_now() - 2  # every probe of it arrived
            assert last - first >= 2
            assert_once(targets, "eu", first, last)
            assert_once(targets, "us", first, last)
            assert not any(name in ("t10", "t11") for name, loc, _ in targets.hits
                           if loc == "us")
            assert {ua for ua in targets.user_agents} == {
                "crypitor-monitor/0.1.0 (location=eu)", "crypitor-monitor/0.1.0 (location=us)"}
            owned = [rt.ownership.count() for rt in rts if rt.ownership is not None]
            assert sum(owned[:3]) == TARGETS and owned[3] == TARGETS - len(EU_ONLY)
            async with aiohttp.ClientSession() as http:
                await _check_metrics(http, rts[0])
                us = await (await get(http, rts[3], "/metrics")).text()
                assert 'target="t10"' not in us  # never probed there: not even a counter
                await until(lambda: _sees_all(http, rts[3]), "us-1's API shows every result")
                await _check_views(http, rts)


async def _check_metrics(http: aiohttp.ClientSession, rt: Runtime) -> None:
    assert rt.ownership is not None
    text = await (await get(http, rt, "/metrics")).text()
    owned = {s.name for s in rt.states if rt.ownership.owns(s.config)}
    shown = {name for name in (f"t{i}" for i in range(TARGETS))
             if f'probe_success{{location="eu",target="{name}",type="http"}}' in text}
    assert shown == owned  # its own targets' gauges, and only those
    assert f"crypitor_cluster_owned_targets {float(len(owned))}" in text
    assert 'crypitor_cluster_members{location="eu"} 3.0' in text
    for name in owned:
        assert f'crypitor_probes_total{{location="eu",result="success",target="{name}",' \
               f'type="http"}}' in text


async def _sees_all(http: aiohttp.ClientSession, rt: Runtime) -> bool:
    body = await (await get(http, rt, "/api/v1/targets")).json()
    return all(set(t["locations"]) == ({"eu"} if t["name"] in ("t10", "t11") else {"eu", "us"})
               for t in body)


async def _check_views(http: aiohttp.ClientSession, rts: list[Runtime]) -> None:
    for rt in rts:
        body = await (await get(http, rt, "/api/v1/targets")).json()
        assert [t["name"] for t in body] == [f"t{i}" for i in range(TARGETS)]
        for t in body:
            assert t["up"] is True
            for location, seen in t["locations"].items():
                assert seen["up"] is True and seen["stale"] is False
                assert seen["instance"].startswith(location + "-")
                assert seen["last_result"]["success"] is True
        one = await (await get(http, rt, "/api/v1/targets/t3")).json()
        assert set(one["locations"]) == {"eu", "us"} and one["up"] is True
        assert set(one["uptime"]) == {"24h", "7d", "30d"}
        page = await (await get(http, rt, "/")).text()
        for location in ("eu", "us"):  # each location's state, with the instance that probed
            assert re.search(rf"{location} \({location}-[^)]+\): UP", page)
        assert f"All {TARGETS} up" in page


@pytest.mark.timeout(90)
async def test_a_killed_instance_s_targets_are_taken_over(
        tmp_path: Path, redis_keyspace: RedisKeyspace) -> None:
    url, prefix = redis_keyspace.url, redis_keyspace.prefix
    async with target_server() as targets:
        rts = [runtime(tmp_path, url, prefix, "eu", f"eu-{i}", targets, TARGETS)
               for i in (1, 2, 3)]
        async with running(rts):
            await all_see(rts, {"eu-1", "eu-2", "eu-3"})
            victim = rts[1]
            assert victim.ownership is not None
            theirs = [s.name for s in victim.states if victim.ownership.owns(s.config)]
            assert theirs  # 12 targets over 3 instances: each owns some
            await slots_pass(1)
            killed_at = time.time()
            await kill(victim)
            survivors = [rts[0], rts[2]]
            await all_see(survivors, {"eu-1", "eu-3"})  # the dead one dropped
            await slots_pass(3)
            last = slot_now() - 2
            for name in theirs:  # within lease + 2 intervals of the kill
                offset = grid_offset(name, INTERVAL)
                bound = grid_slot(killed_at + LEASE + 2 * INTERVAL, offset, INTERVAL)
                after = sorted(k for (n, _, k) in targets.slots(since=killed_at) if n == name)
                assert after and after[0] <= bound, (name, after, bound)
            # and never twice in one slot, before or after
            assert max(targets.slots().values()) == 1
            first_after = max(grid_slot(killed_at + LEASE + 2 * INTERVAL, grid_offset(n,
                              INTERVAL), INTERVAL) for n in expected("eu")) + 1
            assert_once(targets, "eu", first_after, last)


@pytest.mark.timeout(90)
async def test_a_joining_instance_misses_no_slot_and_doubles_none(
        tmp_path: Path, redis_keyspace: RedisKeyspace) -> None:
    url, prefix = redis_keyspace.url, redis_keyspace.prefix
    async with target_server() as targets:
        rts = [runtime(tmp_path, url, prefix, "eu", f"eu-{i}", targets, TARGETS)
               for i in (1, 2)]
        late = runtime(tmp_path, url, prefix, "eu", "eu-3", targets, TARGETS)
        async with running(rts):
            await all_see(rts, {"eu-1", "eu-2"})
            await slots_pass(1)
            first = slot_now() + 1
            await slots_pass(2)
            async with running([late]):
                await all_see([*rts, late], {"eu-1", "eu-2", "eu-3"})
                await slots_pass(3)
                last = slot_now() - 2
                assert late.ownership is not None and late.ownership.count() > 0
                assert_once(targets, "eu", first, last)  # through the change-over


@pytest.mark.timeout(120)
async def test_redis_stopped_mid_run_probing_and_metrics_go_on_and_the_feed_resumes(
        tmp_path: Path, redis_servers: RedisServers) -> None:
    server = redis_servers.start()
    prefix = fresh_prefix()
    async with target_server() as targets:
        rts = [runtime(tmp_path, server.url, prefix, "eu", f"eu-{i}", targets, TARGETS)
               for i in (1, 2)]
        async with running(rts), aiohttp.ClientSession() as http:
            await all_see(rts, {"eu-1", "eu-2"})
            server.stop()
            stopped_at = time.time()
            await slots_pass(3)
            probed = {name for name, _, at in targets.hits if at > stopped_at + INTERVAL}
            assert probed == set(expected("eu"))  # everything still probed, by its owner
            for rt in rts:
                resp = await get(http, rt, "/metrics")
                assert resp.status == 200
                assert 'probe_success{location="eu",target="' in await resp.text()
                api = await get(http, rt, "/api/v1/targets")  # its own results, Redis down
                assert api.status == 200
            server.start()
            restarted_at = time.time()
            client = redis.Redis.from_url(server.url, socket_timeout=5, decode_responses=True)
            try:
                await until(lambda: _published_since(client, prefix, restarted_at),
                            "every target's result published again")
            finally:
                client.close()


def _published_since(client: redis.Redis, prefix: str, since: float) -> bool:
    latest = client.hgetall(f"{prefix}:latest")
    stamps = {}
    for key, value in latest.items():
        name = str(key).split("\x1f")[0]
        started = json.loads(value)["result"]["started_at"]
        stamps[name] = datetime.fromisoformat(started).timestamp()
    return all(stamps.get(name, 0.0) > since for name in expected("eu"))
