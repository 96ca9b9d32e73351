"""The incident log behind the status page: alert transitions (firing → resolved, with times,
alertname, target, severity, summary) kept durably by both alert stores (SQLite and the
cluster's Redis), bounded, and written by the alerting loop's flush."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.store import INCIDENTS_KEEP_FOR, AlertStore, Store
from monitor.cluster import RedisAlertStore
from tests.support.redis_server import RedisKeyspace

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def event(status: str, at: datetime, fp: str = "f1", started: datetime = T0,
          target: str = "eth-main") -> dict[str, str]:
    return {"fingerprint": fp, "alertname": "TargetDown", "target": target,
            "severity": "critical", "summary": f"{target} is down: status",
            "status": status, "started_at": started.isoformat(), "at": at.isoformat()}


@pytest.fixture(params=["sqlite", "redis"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two handles on one store: what one wrote, the other (a restart, another instance)
    reads."""
    a: Store
    b: Store
    if request.param == "sqlite":
        a, b = AlertStore(tmp_path / "alerts.sqlite3"), AlertStore(tmp_path / "alerts.sqlite3")
    else:
        space: RedisKeyspace = request.getfixturevalue("redis_keyspace")
        a = RedisAlertStore(space.url, holder="x", prefix=space.prefix)
        b = RedisAlertStore(space.url, holder="y", prefix=space.prefix)
    yield a, b
    a.close()
    b.close()


def test_firing_opens_and_resolved_closes_an_incident(stores: tuple[Store, Store]) -> None:
    writer, reader = stores
    writer.log_incidents([event("firing", T0)])
    writer.log_incidents([event("firing", T0 + timedelta(seconds=5))])  # still open: no copy
    (open_,) = reader.incidents(T0 - timedelta(days=7))
    assert open_["resolved_at"] is None and open_["alertname"] == "TargetDown"
    assert open_["summary"] == "eth-main is down: status" and open_["severity"] == "critical"
    end = T0 + timedelta(minutes=3)
    writer.log_incidents([event("resolved", end),
                          event("firing", end + timedelta(minutes=1), "f2",
                                end + timedelta(minutes=1), "web")])
    items = reader.incidents(T0 - timedelta(days=7))
    assert [(i["target"], i["resolved_at"]) for i in items] == [
        ("web", None), ("eth-main", end.isoformat())]  # newest start first
    assert items[1]["id"] == open_["id"] and items[1]["started_at"] == T0.isoformat()
    assert [i["target"] for i in reader.incidents(end + timedelta(seconds=1))] == ["web"]
    # a resolve with nothing open is recorded closed
    writer.log_incidents([event("resolved", end, "f3", T0, "lonely")])
    assert any(i["target"] == "lonely" and i["resolved_at"] == end.isoformat()
               for i in reader.incidents(T0))


def test_incidents_are_dropped_a_while_after_they_ended(stores: tuple[Store, Store]) -> None:
    writer, reader = stores
    writer.log_incidents([event("firing", T0), event("resolved", T0 + timedelta(hours=1))])
    later = T0 + INCIDENTS_KEEP_FOR + timedelta(days=1)
    writer.log_incidents([event("firing", later, "f2", later, "web")])
    assert [i["target"] for i in reader.incidents(T0 - timedelta(days=1))] == ["web"]
