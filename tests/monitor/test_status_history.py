"""The status page's history: hourly buckets over 24 h and daily ones over 90 d with uptime and
latency (summed probe durations / count), in SQLite (migrating a version 1 file) and in the
cluster's Redis, behind the same `History` protocol."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from monitor.cluster import ClusterHistory, connect
from monitor.runtime import DAYS_SHOWN, HOURS_SHOWN, Buckets, History, UptimeHistory
from tests.support.redis_server import RedisKeyspace

HOUR, DAY = 3600, 86400
NOW = 1_800_000_000.0 + 1800  # half past an hour, mid-day


def feed(history: History) -> None:
    """The same probes for both histories."""
    history.record("a", True, NOW - 60, 0.100)
    history.record("a", False, NOW - 30, 0.300)  # this hour: 1 of 2, 200 ms mean
    history.record("a", True, NOW - 3 * HOUR, 0.050)  # three hours ago: 50 ms
    history.record("a", True, NOW - 30 * HOUR, 0.010)  # yesterday: not in the 24 hours
    history.record("a", False, NOW - 80 * DAY, 1.0)  # 80 days ago: in the 90 days
    history.record("b", True, NOW - 10)  # no duration given: uptime, no latency


def check(buckets: dict[str, Buckets]) -> None:
    a = buckets["a"]
    assert len(a.hourly) == HOURS_SHOWN and len(a.daily) == DAYS_SHOWN
    assert [b.start for b in a.hourly] == [(NOW // HOUR - 23 + i) * HOUR for i in range(24)]
    now_hour, three_ago = a.hourly[-1], a.hourly[-4]
    assert (now_hour.ok, now_hour.total, now_hour.uptime) == (1, 2, 0.5)
    assert now_hour.latency_ms == pytest.approx(200.0)
    assert three_ago.uptime == 1.0 and three_ago.latency_ms == pytest.approx(50.0)
    assert sum(b.total for b in a.hourly) == 3
    assert a.hourly[0].uptime is None and a.hourly[0].latency_ms is None  # nothing ran
    assert a.daily[-1].start == (NOW // DAY) * DAY
    assert sum(b.total for b in a.daily) == 5
    eighty = a.daily[-81]
    assert eighty.uptime == 0.0 and eighty.latency_ms == pytest.approx(1000.0)
    b = buckets["b"]
    assert b.hourly[-1].uptime == 1.0 and b.hourly[-1].latency_ms is None
    assert all(x.total == 0 for x in buckets["none"].hourly + buckets["none"].daily)


async def test_sqlite_buckets_survive_a_restart_and_count_what_is_not_flushed(
        tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    history = UptimeHistory(path, clock=lambda: NOW)
    feed(history)
    history.record("a", True, NOW - 95 * DAY, 0.1)  # beyond the 90 days kept: dropped
    check(await history.buckets(["a", "b", "none"]))  # from memory
    await history.flush()
    history.close()
    reopened = UptimeHistory(path, clock=lambda: NOW)
    check(await reopened.buckets(["a", "b", "none"]))  # from the file
    reopened.record("a", True, NOW, 0.5)  # not flushed: counted
    assert (await reopened.buckets(["a"]))["a"].hourly[-1].total == 3
    reopened.close()
    conn = sqlite3.connect(path)
    days = conn.execute("SELECT MIN(day) FROM daily").fetchone()[0]
    conn.close()
    assert days >= (NOW - 91 * DAY) // DAY  # the 95-day-old probe is not kept


async def test_a_version_1_file_is_migrated_and_its_latency_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE uptime (target TEXT NOT NULL, hour INTEGER NOT NULL,"
                 " ok INTEGER NOT NULL, total INTEGER NOT NULL, PRIMARY KEY (target, hour))"
                 " WITHOUT ROWID")
    hour = int(NOW // HOUR)
    conn.executemany("INSERT INTO uptime VALUES ('a', ?, ?, 4)",
                     [(hour, 3), (hour - 48, 2)])
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    history = UptimeHistory(path, clock=lambda: NOW)
    a = (await history.buckets(["a"]))["a"]
    assert a.hourly[-1].uptime == 0.75 and a.hourly[-1].latency_ms is None
    assert a.daily[-3].total == 4 and a.daily[-1].total == 4  # days filled from the hours
    assert (await history.ratios(["a"]))["a"]["7d"] == pytest.approx(5 / 8)
    history.record("a", True, NOW, 0.2)
    await history.flush()
    a = (await history.buckets(["a"]))["a"]
    assert a.hourly[-1].total == 5 and a.hourly[-1].latency_ms == pytest.approx(200.0)
    history.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()


@pytest.mark.timeout(30)
async def test_the_cluster_history_gives_the_same_buckets_from_every_instance(
        redis_keyspace: RedisKeyspace) -> None:
    redis = connect(redis_keyspace.url)
    try:
        eu = ClusterHistory(redis, redis_keyspace.prefix, lambda: NOW)
        us = ClusterHistory(redis, redis_keyspace.prefix, lambda: NOW)
        feed(eu)
        await eu.flush()
        check(await us.buckets(["a", "b", "none"]))  # what another instance flushed
        us.record("a", True, NOW, 0.5)  # its own, not flushed yet: counted
        mine = (await us.buckets(["a"]))["a"].hourly[-1]
        assert mine.total == 3 and mine.latency_ms == pytest.approx(300.0)
        await us.flush()  # what the flush moved to Redis stays counted in the cached read
        assert (await us.buckets(["a"]))["a"].hourly[-1].total == 3
        ttl = await redis.ttl(f"{redis_keyspace.prefix}:latency:d:{int(NOW // DAY)}")
        assert 90 * DAY < ttl <= 91 * DAY  # the 90 days are kept
    finally:
        await redis.aclose()
