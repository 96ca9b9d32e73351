"""What only the SQLite backend promises: group commit, leases cleared at start-up, one process
per file, and nothing acknowledged lost when the process is killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import signal
import sqlite3
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from service import StoreError
from service.models import Attempt, DeliveryState, NewEvent, Verdict
from service.store.sqlite import SqliteStore
from service.store.sqlite import schema as sql
from service.store.sqlite.queue import CLAIM_SQL
from tests.support.stores import NOW, endpoint

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[3]  # the repository: the child imports `service`
EVENT_ID = re.compile(r"evt_[0-9a-f]{16}")
S = timedelta(seconds=1)

# Accepts events as fast as it can, eight at a time, printing each id once `accept` returned
# it, i.e. once the store acknowledged it. Bounded, though the test kills it long before.
CHILD = """
import asyncio, sys
from datetime import UTC, datetime
from pathlib import Path
from service.models import Attempt, DeliveryState, NewEvent, Verdict
from service.store.sqlite import SqliteStore

async def main() -> None:
    store = SqliteStore(Path(sys.argv[1]))
    await store.open()
    for n in range(5000):
        batch = [store.accept([NewEvent("t", {"n": n, "i": i})], datetime.now(UTC))
                 for i in range(8)]
        for (event_id,) in await asyncio.gather(*batch):
            print(event_id, flush=True)

asyncio.run(main())
"""


async def opened(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    await store.open()
    return store


async def test_a_burst_of_accepts_costs_a_few_commits(tmp_path: Path) -> None:
    store = await opened(tmp_path / "s.sqlite3")
    await store.put_endpoint(endpoint("ep_a"))
    before = store.commits
    ids = await asyncio.gather(*(store.accept([NewEvent("t", i)], NOW) for i in range(200)))
    burst = store.commits - before
    for i in range(3):  # one at a time, each waits for its own commit
        await store.accept([NewEvent("t", i)], NOW)
    alone = store.commits - before - burst
    await store.close()
    assert len({i for (i,) in ids}) == 200
    assert 1 <= burst < 50, f"200 concurrent accepts took {burst} commits"
    assert alone == 3


async def test_one_failing_write_does_not_spoil_its_batch(tmp_path: Path) -> None:
    store = await opened(tmp_path / "s.sqlite3")
    await store.put_endpoint(endpoint("ep_a"))
    results = await asyncio.gather(
        *(store.accept([NewEvent("t", object() if i == 5 else i)], NOW) for i in range(10)),
        return_exceptions=True)
    assert isinstance(results[5], TypeError)  # not JSON: a caller's bug, reported as is
    good = [r[0] for i, r in enumerate(results) if i != 5 and isinstance(r, list)]
    assert len(good) == 9
    assert len(await store.deliveries_of("ep_a")) == 9
    assert all([await store.get_event(event_id) for event_id in good])
    await store.close()


async def test_leases_are_cleared_when_the_store_opens(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = await opened(path)
    await store.put_endpoint(endpoint("ep_a"))
    await store.accept([NewEvent("t", 1)], NOW)
    (claim,) = await store.claim(10, NOW, 3600)
    assert await store.claim(10, NOW, 3600) == []
    await store.close()  # as if the process died holding the lease

    store = await opened(path)
    (again,) = await store.claim(10, NOW, 3600)
    await store.close()
    assert again.delivery.id == claim.delivery.id


async def test_one_store_per_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    first = await opened(path)
    with pytest.raises(StoreError, match="in use"):
        await SqliteStore(path).open()
    await first.close()
    second = await opened(path)
    assert await second.ping()
    await second.close()


async def test_failures_are_store_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError):
        await SqliteStore(tmp_path / "file" / "s.sqlite3").open()
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open"):
        await SqliteStore(garbage).open()

    store = await opened(tmp_path / "s.sqlite3")
    await store.close()
    assert await store.ping() is False
    with pytest.raises(StoreError, match="not open"):
        await store.accept([NewEvent("t", 1)], NOW)
    with pytest.raises(StoreError, match="not open"):
        await store.stats(NOW)


async def test_file_layout(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = await opened(path)
    await store.accept([NewEvent("t", 1, "key")], NOW)
    await store.accept([NewEvent("t", 2)], NOW.replace(day=3))  # 48 h on: the key is swept
    await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT count(*) FROM idempotency").fetchone() == (0,)
        plan = " ".join(r[3] for r in db.execute("EXPLAIN QUERY PLAN " + CLAIM_SQL, (0, 10)))
    db.close()
    assert "deliveries_ready" in plan and "TEMP B-TREE" not in plan  # no scan, no sort


async def test_a_stale_worker_cannot_overwrite_a_newer_claim(tmp_path: Path) -> None:
    store = await opened(tmp_path / "s.sqlite3")
    await store.put_endpoint(endpoint("ep_a"))
    await store.accept([NewEvent("t", 1)], NOW)
    assert await store.claim(0, NOW, 30) == []
    (slow,) = await store.claim(1, NOW, 30)
    (fresh,) = await store.claim(1, NOW + 31 * S, 30)  # the slow worker's lease ran out
    await store.settle(fresh, Attempt(1, NOW + 32 * S, 0.1, 200), Verdict(DeliveryState.DELIVERED))
    await store.settle(slow, Attempt(1, NOW + 40 * S, 9.0, None, "timeout"),
                       Verdict(DeliveryState.RETRYING, NOW + 100 * S))
    await store.release([slow])
    ((delivery, attempts),) = (await store.get_event(slow.event.id) or pytest.fail()).deliveries
    await store.close()
    assert delivery.state is DeliveryState.DELIVERED  # the newer outcome stands
    assert delivery.attempts == 2 and len(attempts) == 2  # but both attempts are on record


async def run_child_until(path: Path, lines: int) -> list[str]:
    """Start the accepting child, SIGKILL it once `lines` ids were printed, return them all."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert child.stdout is not None
    acked: list[str] = []
    try:
        async with asyncio.timeout(20):
            while len(acked) < lines:
                line = await child.stdout.readline()
                if not line:
                    break
                acked.append(line.decode().strip())
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have died on its own
            child.send_signal(signal.SIGKILL)  # mid-stream: a commit is in flight right now
        tail, errors = await child.communicate()
    assert child.returncode == -signal.SIGKILL, errors.decode()
    acked += EVENT_ID.findall(tail.decode())  # printed before the kill: acknowledged too
    assert len(acked) >= lines and all(EVENT_ID.fullmatch(a) for a in acked)
    return acked


async def test_sigkill_loses_no_acknowledged_event(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    store = await opened(path)
    await store.put_endpoint(endpoint("ep_a"))
    await store.put_endpoint(endpoint("ep_b"))
    await store.close()
    acked: list[str] = []
    for lines in (150, 600, 1000):  # three crashes at different points, recovering each time
        acked += await run_child_until(path, lines)

    store = await opened(path)
    try:
        views = [await store.get_event(event_id) for event_id in acked]
        missing = [a for a, v in zip(acked, views, strict=True) if v is None]
        assert missing == [], f"{len(missing)} of {len(acked)} acknowledged events lost"
        for view in views:
            assert view is not None
            assert sorted(d.endpoint_id for d, _ in view.deliveries) == ["ep_a", "ep_b"]
        claimed = await store.claim(100_000, NOW.replace(year=2100), 30)
        assert {c.event.id for c in claimed} >= set(acked)
    finally:
        await store.close()


@pytest.mark.parametrize("found", [1, 999])  # older than any upgrade; written by a newer build
async def test_a_file_of_an_unknown_schema_version_is_refused_by_name(
        tmp_path: Path, found: int) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {found}")
    conn.close()
    known = ", ".join(str(v) for v in sorted((*sql.UPGRADABLE, sql.VERSION)))
    with pytest.raises(StoreError) as caught:
        await SqliteStore(path).open()
    assert str(caught.value) == (
        f"the store file {path} has schema version {found}; this build knows versions {known}"
        " (written by a newer build? run that one, or move the data away to start afresh)")
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (found,)  # left as it was
    conn.close()


async def test_a_version_4_file_is_upgraded_in_place(tmp_path: Path) -> None:
    """Version 5 only added monitor revisions: a version 4 file keeps its monitors, which
    start at revision 0 and take compare-and-set writes from there."""
    path = tmp_path / "v4.db"
    v4 = sql.SCHEMA.replace(",\n    revision INTEGER NOT NULL DEFAULT 0", "").replace(
        f"user_version = {sql.VERSION}", "user_version = 4")
    assert "revision" not in v4
    conn = sqlite3.connect(path)
    conn.executescript(v4)
    conn.execute("INSERT INTO monitors VALUES ('mon_a', 'ethereum', 'ep_a', ?, 1, 1, 1, x'',"
                 " 'all', NULL, '[]', 1, NULL)", (bytes(range(20)),))
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        old = await store.get_monitor("mon_a")
        assert old is not None and old.revision == 0
        assert old.addresses == {"0x" + bytes(range(20)).hex()}
        assert await store.replace_monitor(dataclasses.replace(old, enabled=False))
        now = await store.get_monitor("mon_a")
        assert now is not None and (now.enabled, now.revision) == (False, 1)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (sql.VERSION,)
    conn.close()


def test_row_ids_increase_even_when_the_clock_steps_back() -> None:
    ahead = (time.time_ns() // 1000 + 3_600_000_000) << 12  # an hour in the future
    clock = sql.IdClock(ahead)
    first = clock.take(3)
    assert first == ahead + 1 and clock.take(1) == ahead + 4
    assert sql.row_id(sql.event_ref(first), "evt_") == first
    assert sql.row_id(sql.event_ref(first), "msg_") is None
    assert sql.row_id("evt_nothex!!nothex!!", "evt_") is None


def test_routing_finds_the_endpoints_of_a_type_in_listing_order_without_the_disabled() -> None:
    from service.models import Endpoint
    from service.store.sqlite.events import Routing

    eps = [Endpoint("ep_a", "http://a", "s", ("x",)), Endpoint("ep_b", "http://b", "s"),
           Endpoint("ep_c", "http://c", "s", ("x", "y", "x")),
           Endpoint("ep_d", "http://d", "s", ("x",), disabled=True),
           Endpoint("ep_e", "http://e", "s")]
    routing = Routing(eps)
    assert [e.id for e in routing.wanting("x")] == ["ep_a", "ep_b", "ep_c", "ep_e"]
    assert [e.id for e in routing.wanting("y")] == ["ep_b", "ep_c", "ep_e"]
    assert [e.id for e in routing.wanting("z")] == ["ep_b", "ep_e"]
    for kind in ("x", "y", "z"):  # what every endpoint's own `wants` says
        assert routing.wanting(kind) == [e for e in eps if e.wants(kind)]


async def test_accepts_waiting_for_one_commit_are_stored_as_one_write(tmp_path: Path) -> None:
    """Concurrent accepts join one operation (`SqliteStore.accept`): each caller still gets
    its own ids, an idempotency key sent by two of them names one event, and an endpoint
    wanting some of the types gets exactly those events, in order."""
    store = await opened(tmp_path / "s.sqlite3")
    await store.put_endpoint(endpoint("ep_all"))
    await store.put_endpoint(dataclasses.replace(endpoint("ep_ab"), event_types=("a", "b")))
    calls = [[NewEvent(kind, {"call": c, "i": i}) for i, kind in enumerate("abcab")]
             for c in range(6)]
    calls += [[NewEvent("a", {"keyed": k}, "key-1")] for k in range(2)]
    commits = store.commits
    results = await asyncio.gather(*(store.accept(events, NOW) for events in calls))
    assert store.commits - commits <= 2  # the first accept may commit alone
    for events, ids in zip(calls[:6], results[:6], strict=True):
        assert len(ids) == 5
        for sent, event_id in zip(events, ids, strict=True):
            view = await store.get_event(event_id)
            assert view is not None and view.event.data == sent.data
            wanted = {"ep_all"} | ({"ep_ab"} if sent.type in "ab" else set())
            assert {d.endpoint_id for d, _ in view.deliveries} == wanted
    assert results[6] == results[7]  # one key, one event
    deliveries = await store.deliveries_of("ep_ab")
    assert len(deliveries) == 6 * 4 + 1
    assert [d.event_id for d in deliveries] == sorted(d.event_id for d in deliveries)
    await store.close()


@pytest.mark.parametrize("count", [0, 3, 4, 21, 64, 87, 150])
def test_rows_written_in_runs_are_every_row_in_order(count: int) -> None:
    """`insert_rows` and `update_ids` write runs of rows as one statement each (64, 16, 4,
    then row by row): whatever the count, every row is written once, in the given order."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER,"
                 " flag INTEGER NOT NULL)")
    rows = [(10 * i, f"row {i}", i * i) for i in range(count)]
    sql.insert_rows(conn, "INSERT INTO t (id, name, n, flag)", "(?, ?, ?, 0)", rows)
    assert conn.execute("SELECT id, name, n FROM t ORDER BY rowid").fetchall() == rows
    chosen = [row[0] for row in rows][::2]
    sql.update_ids(conn, "UPDATE t SET flag = ?1, n = n + ?2", (1, 5), chosen)
    assert conn.execute("SELECT id FROM t WHERE flag = 1 ORDER BY id").fetchall() == \
        [(i,) for i in chosen]
    assert conn.execute("SELECT id, n FROM t WHERE flag = 1 ORDER BY id").fetchall() == \
        [(i, (i // 10) ** 2 + 5) for i in chosen]
