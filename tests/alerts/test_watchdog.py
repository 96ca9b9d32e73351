"""`[alerts].watchdog`: the always-firing Watchdog alert (no target, severity none) is routed
like any other alert, listed with the others, and its end is sent when it is turned off."""

from __future__ import annotations

from pathlib import Path

from alerts.alerting import Alerting
from alerts.evaluate import Evaluator
from alerts.routing import Router
from alerts.store import AlertStore
from monitor.config.alertconfig import AlertsSection, RouteConfig


async def test_the_watchdog_fires_always_and_its_end_is_routed(tmp_path: Path) -> None:
    assert AlertsSection().watchdog is False  # off unless asked for
    store = AlertStore(tmp_path / "alerts.sqlite3")
    alerting = Alerting(Evaluator([], {}, {}), Router(RouteConfig(group_wait=0.0)), store,
                        {}, watchdog=True)
    await alerting.flush()
    (alert, phase, muted), = alerting.current()
    assert (alert.name, phase, muted) == ("Watchdog", "firing", None)
    assert dict(alert.labels) == {"alertname": "Watchdog", "severity": "none"}
    assert [a.name for a in alerting.router.firing()] == ["Watchdog"]
    alerting.watchdog = False
    await alerting.flush()
    assert alerting.current() == [] and alerting.router.firing() == []
    store.close()
