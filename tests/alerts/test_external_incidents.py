"""Alerts received from Alertmanager enter the incident log as our own do: a new firing one
opens an incident, its end (sent by Alertmanager, or its `endsAt` passed) closes it; repeats
change nothing, an end never seen firing is ignored, and the times are UTC and never later
than now, whatever the sender wrote."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alerts import alertmanager
from alerts.alerting import Alerting
from alerts.evaluate import Evaluator
from alerts.routing import Router
from alerts.store import AlertStore
from monitor.config.alertconfig import RouteConfig

NOW = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
ZERO = "0001-01-01T00:00:00Z"


def am(name: str, status: str, starts: str, ends: str = ZERO) -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": name, "instance": "db1:9100"},
            "annotations": {"summary": f"{name} on db1"}, "startsAt": starts, "endsAt": ends}


async def test_external_alerts_are_logged_as_incidents(tmp_path: Path) -> None:
    now = [NOW]
    store = AlertStore(tmp_path / "alerts.sqlite3")
    alerting = Alerting(Evaluator([], {}, {}), Router(RouteConfig(group_wait=0.0)), store,
                        {}, clock=lambda: now[0])

    async def post(*alerts: dict[str, Any]) -> None:  # not leading: queued for the flush
        await alerting.receive_external(alertmanager.parse({"version": "4",
                                                            "alerts": list(alerts)}))
        await alerting.flush()

    def log() -> dict[str, dict[str, Any]]:
        return {i["alertname"]: i for i in store.incidents(NOW - timedelta(days=1))}

    await post(am("DiskFull", "firing", "2026-12-06T18:30:00+01:00"),  # 17:30 UTC
               am("DiskFull", "firing", "2026-12-06T18:30:00+01:00"),  # a repeat
               am("Expiring", "firing", "2026-12-06T17:40:00Z", "2026-12-06T17:50:00Z"),
               am("NeverSeen", "resolved", "2026-12-06T17:00:00Z", "2026-12-06T17:10:00Z"))
    first = log()
    assert set(first) == {"DiskFull", "Expiring"}
    disk = first["DiskFull"]
    assert (disk["started_at"], disk["resolved_at"]) == ("2026-12-06T17:30:00+00:00", None)
    assert (disk["severity"], disk["summary"], disk["target"]) == (
        "warning", "DiskFull on db1", "")
    assert first["Expiring"]["resolved_at"] == "2026-12-06T17:50:00+00:00"  # endsAt passed

    now[0] = NOW + timedelta(minutes=5)
    await post(am("DiskFull", "firing", "2026-12-06T17:30:00Z"))  # still open: no copy
    await post(am("DiskFull", "resolved", "2026-12-06T17:30:00Z", "9999-12-31T23:59:59Z"))
    second = log()
    assert second["DiskFull"]["id"] == disk["id"]
    assert second["DiskFull"]["resolved_at"] == now[0].isoformat()  # not 9999
    assert second["Expiring"] == first["Expiring"]  # not expired by that far end
    assert len(store.incidents(NOW - timedelta(days=1))) == 2
    store.close()
