"""`continue` on child routes, as Alertmanager reads it: a matching route with continue lets
the next siblings match too, so one alert reaches several receivers, each with its own group,
timers and resolution; without it the first matching child takes the alert alone.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta

from alerts.model import Alert
from alerts.routing import Router
from alerts.silences import Silences
from monitor.config import RouteConfig
from monitor.config.alertconfig import AlertsSection
from monitor.config.decode import Decoder

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
NONE = Silences()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def alert(status: str = "firing", **labels: str) -> Alert:
    return Alert(labels={"alertname": "TargetDown", "target": "eth-main", **labels},
                 status="resolved" if status == "resolved" else "firing")


def tree(first_continues: bool) -> RouteConfig:
    return RouteConfig(receiver="default", group_by=("target",), group_wait=10.0, routes=(
        RouteConfig(receiver="pager", match={"severity": "critical"},
                    continue_=first_continues),
        RouteConfig(receiver="chat", match={"team": "core"}),
        RouteConfig(receiver="managers", match={"team": "core"}),  # after a non-continue
    ))


def test_without_continue_the_first_matching_child_takes_the_alert() -> None:
    router = Router(tree(False))
    assert [r.receiver for r in router.root.find_all(
        {"severity": "critical", "team": "core"})] == ["pager"]
    assert router.root.find({"team": "core"}).receiver == "chat"
    assert [r.receiver for r in router.root.find_all({"team": "other"})] == ["default"]


def test_continue_sends_to_every_matching_sibling_until_one_without_it() -> None:
    router = Router(tree(True))
    labels = {"severity": "critical", "team": "core"}
    assert [r.receiver for r in router.root.find_all(labels)] == ["pager", "chat"]
    # a continue route that matches nothing more does not stop the default
    assert [r.receiver for r in router.root.find_all({"severity": "critical"})] == ["pager"]

    router.update([alert(**labels)], at(0))
    notes = router.due(at(10), NONE)
    assert sorted(n.receiver for n in notes) == ["chat", "pager"]
    assert len({n.group_key for n in notes}) == 2
    assert len(router.firing()) == 1  # one alert, however many groups hold it

    router.update([alert("resolved", **labels)], at(20))
    resolved = router.due(at(70), NONE)
    assert sorted(n.receiver for n in resolved) == ["chat", "pager"]
    assert all(len(n.resolved) == 1 and not n.firing for n in resolved)


def test_continue_in_nested_routes_and_restore() -> None:
    spec = RouteConfig(receiver="default", group_by=("target",), routes=(
        RouteConfig(match={"team": "core"}, receiver="core", continue_=True, routes=(
            RouteConfig(receiver="core-pager", match={"severity": "critical"}),)),
        RouteConfig(receiver="audit", match={"team": "core"}),
    ))
    router = Router(spec)
    labels = {"team": "core", "severity": "critical"}
    assert [r.receiver for r in router.root.find_all(labels)] == ["core-pager", "audit"]
    router.update([alert(**labels)], at(0))
    assert len(router.due(at(10), NONE)) == 2

    again = Router(spec)
    again.restore(router.snapshot())
    assert again.due(at(20), NONE) == []  # restored as notified, in both groups
    again.update([alert("resolved", **labels)], at(30))
    assert sorted(n.receiver for n in again.due(at(80), NONE)) == ["audit", "core-pager"]


def test_config_reads_continue() -> None:
    raw = tomllib.loads('''
[[receivers]]
name = "a"
chat_id = "1"
[route]
receiver = "a"
[[route.routes]]
match = { severity = "critical" }
continue = true
[[route.routes]]
match = { team = "core" }
''')
    d = Decoder()
    section = d.table(AlertsSection, raw, "alerts")
    assert d.issues == [] and section is not None
    assert [r.continue_ for r in section.route.routes] == [True, False]
    d = Decoder()
    assert d.table(AlertsSection, {"route": {"routes": [{"continue": "yes"}]}}, "alerts") is None
    assert "alerts.route.routes[0].continue" in str(d.issues[0])
