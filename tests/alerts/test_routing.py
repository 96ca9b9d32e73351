"""The router: route tree, grouping, Alertmanager's timers, muting, and restart safety.

Every test drives an explicit clock: `at(seconds)` is T0 plus that many seconds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from alerts import AlertError
from alerts.model import Alert, Notification
from alerts.route_tree import Route
from alerts.routing import Router
from alerts.silences import Silence, Silences
from monitor.config import InhibitConfig, MaintenanceConfig, RouteConfig

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
WAIT, INTERVAL, REPEAT = 10.0, 60.0, 3600.0
ROUTE = RouteConfig(receiver="oncall", group_by=("target",), group_wait=WAIT,
                    group_interval=INTERVAL, repeat_interval=REPEAT)
NONE = Silences()


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def alert(name: str = "NodeLagging", target: str = "eth-main", status: str = "firing",
          **labels: str) -> Alert:
    return Alert(labels={"alertname": name, "target": target, **labels},
                 status="resolved" if status == "resolved" else "firing")


def names(alerts: Sequence[Alert]) -> list[str]:
    return [f"{a.name}/{a.labels['target']}" for a in alerts]


def run(router: Router, start: float, end: float,
        silences: Silences = NONE) -> list[tuple[float, Notification]]:
    """Calls due() at every next_due() in [start, end]: what a well-behaved caller sends."""
    sent: list[tuple[float, Notification]] = []
    now = at(start)
    while (when := router.next_due(now)) is not None and when <= at(end):
        now = when
        sent += [((now - T0).total_seconds(), n) for n in router.due(now, silences)]
        now += timedelta(microseconds=1)
    return sent


def test_group_wait_interval_resolve_and_repeat() -> None:
    router = Router(ROUTE, (), ())
    router.update([alert()], at(0))
    assert router.next_due(at(0)) == at(WAIT)
    assert router.due(at(WAIT - 1), NONE) == []
    [first] = router.due(at(WAIT), NONE)
    assert (first.receiver, first.group_labels) == ("oncall", {"target": "eth-main"})
    assert names(first.firing) == ["NodeLagging/eth-main"] and first.resolved == ()

    # a second alert of the same group 5s later waits for the next interval boundary
    router.update([alert(), alert("NodeHeadStale")], at(WAIT + 5))
    assert router.due(at(WAIT + 5), NONE) == []
    assert router.due(at(WAIT + INTERVAL - 1), NONE) == []
    [second] = router.due(at(WAIT + INTERVAL), NONE)
    assert names(second.firing) == ["NodeHeadStale/eth-main", "NodeLagging/eth-main"]
    assert second.group_key == first.group_key

    # unchanged: nothing at the next boundary
    assert router.due(at(WAIT + 2 * INTERVAL), NONE) == []

    # one resolves: one notification with it resolved and the other still firing
    router.update([alert("NodeHeadStale", status="resolved")], at(WAIT + 2 * INTERVAL + 3))
    [third] = router.due(at(WAIT + 3 * INTERVAL), NONE)
    assert names(third.firing) == ["NodeLagging/eth-main"]
    assert names(third.resolved) == ["NodeHeadStale/eth-main"]
    assert router.due(at(WAIT + 4 * INTERVAL), NONE) == []

    # nothing changes: re-sent repeat_interval after the last notification, not before
    last = WAIT + 3 * INTERVAL
    sent = run(router, last + 1, last + REPEAT + INTERVAL / 2)
    assert [t for t, _ in sent] == [last + REPEAT]
    assert names(sent[0][1].firing) == ["NodeLagging/eth-main"] and sent[0][1].resolved == ()


def test_all_resolved_notifies_once_and_removes_the_group() -> None:
    router = Router(ROUTE, (), ())
    router.update([alert()], at(0))
    assert len(router.due(at(WAIT), NONE)) == 1
    router.update([alert(status="resolved")], at(20))
    [note] = router.due(at(WAIT + INTERVAL), NONE)
    assert note.firing == () and names(note.resolved) == ["NodeLagging/eth-main"]
    # the emptied group lives one more interval (a re-fire joins it), then it is gone
    assert router.due(at(WAIT + 2 * INTERVAL), NONE) == []
    assert router.next_due(at(WAIT + 2 * INTERVAL)) is None
    assert router.firing() == []
    assert run(router, WAIT + INTERVAL, 10 * REPEAT) == []


def test_resolved_before_group_wait_is_never_sent() -> None:
    router = Router(ROUTE, (), ())
    router.update([alert()], at(0))
    router.update([alert(status="resolved")], at(5))
    assert router.due(at(WAIT), NONE) == []
    assert router.next_due(at(WAIT)) is None


def test_unknown_resolved_alert_is_ignored_and_absence_is_not_resolution() -> None:
    router = Router(ROUTE, (), ())
    router.update([alert(status="resolved")], at(0))
    assert router.next_due(at(0)) is None
    router.update([alert(), alert("TargetDown", "btc")], at(0))
    router.update([alert()], at(1))  # TargetDown/btc not mentioned: still firing
    notes = router.due(at(WAIT), NONE)
    assert sorted(n for note in notes for n in names(note.firing)) == [
        "NodeLagging/eth-main", "TargetDown/btc"]
    assert names(router.firing()) == ["NodeLagging/eth-main", "TargetDown/btc"]


def test_child_routes_and_inheritance() -> None:
    config = RouteConfig(
        receiver="oncall", group_wait=30, group_interval=120, repeat_interval=7200,
        group_by=("alertname",),
        routes=(
            RouteConfig(match={"severity": "info"}, receiver="managers", routes=(
                RouteConfig(match={"type": "ethereum"}, group_wait=5),)),
            RouteConfig(match={"severity": "info", "type": "bitcoin"}, receiver="never"),
            RouteConfig(match={"type": "bitcoin"}, receiver="btc-team", group_by=("target",)),
        ))
    router = Router(config, (), ())
    root = router.root
    assert (root.receiver, root.group_wait, root.group_by) == ("oncall", 30, ("alertname",))

    info_eth = root.find({"severity": "info", "type": "ethereum"})
    assert info_eth.receiver == "managers"  # "" inherits the parent's receiver
    assert info_eth.group_wait == 5  # set explicitly
    assert (info_eth.group_interval, info_eth.repeat_interval) == (120, 7200)  # inherited
    assert info_eth.group_by == ("alertname",)  # inherited from the root via the parent

    info_btc = root.find({"severity": "info", "type": "bitcoin"})
    assert info_btc.receiver == "managers"  # the first matching sibling wins, depth-first
    assert info_btc.id == 'root/{severity="info"}'

    btc = root.find({"severity": "critical", "type": "bitcoin"})
    assert (btc.receiver, btc.group_by, btc.group_wait) == ("btc-team", ("target",), 30)
    assert root.find({"severity": "critical"}) is root

    router.update([alert(severity="info", type="ethereum"),
                   alert("TargetDown", "btc-1", severity="critical", type="bitcoin"),
                   alert("TargetDown", "eth-2", severity="critical", type="ethereum")], at(0))
    assert [n.receiver for n in router.due(at(5), NONE)] == ["managers"]
    notes = router.due(at(30), NONE)
    assert sorted((n.receiver, tuple(names(n.firing))) for n in notes) == [
        ("btc-team", ("TargetDown/btc-1",)), ("oncall", ("TargetDown/eth-2",))]


def test_duplicate_sibling_matchers_get_distinct_ids() -> None:
    config = RouteConfig(receiver="a", routes=(RouteConfig(match={"x": "1"}, receiver="b"),
                                               RouteConfig(match={"x": "1"}, receiver="c")))
    ids = [r.id for r in Route.build(config).routes]
    assert ids == ['root/{x="1"}#0', 'root/{x="1"}#1']


def test_group_by_splits_and_empty_group_by_joins() -> None:
    alerts = [alert("NodeLagging", "eth-1"), alert("NodeLagging", "eth-2"),
              alert("CertExpiringSoon", "eth-1")]
    split = Router(RouteConfig(receiver="r", group_by=("alertname", "target"),
                               group_wait=WAIT), (), ())
    split.update(alerts, at(0))
    notes = split.due(at(WAIT), NONE)
    assert len(notes) == 3
    assert len({n.group_key for n in notes}) == 3
    assert {"alertname": "CertExpiringSoon", "target": "eth-1"} in [n.group_labels for n in notes]

    by_name = Router(RouteConfig(receiver="r", group_by=("alertname",), group_wait=WAIT), (), ())
    by_name.update(alerts, at(0))
    assert sorted(len(n.firing) for n in by_name.due(at(WAIT), NONE)) == [1, 2]

    joined = Router(RouteConfig(receiver="r", group_by=(), group_wait=WAIT), (), ())
    joined.update(alerts, at(0))
    [one] = joined.due(at(WAIT), NONE)
    assert one.group_labels == {} and len(one.firing) == 3


@pytest.mark.parametrize("period", [5, 35, 47, 61, 95])
def test_flapping_is_bounded_by_group_interval(period: int) -> None:
    router = Router(ROUTE, (), ())
    sent: list[float] = []
    for step in range(0, 1200, 5):  # flips every `period` seconds for 20 minutes
        now = at(step)
        flipped = (step // period) % 2 == 1
        router.update([alert(status="resolved" if flipped else "firing")], now)
        sent += [step] * len(router.due(now, NONE))
    # at most one message per group_interval, even across the group being dropped and made
    assert 1 <= len(sent) <= 1 + 1200 // INTERVAL
    assert all(b - a >= INTERVAL for a, b in pairwise(sent))
    if period in (47, 61):  # out of step with the ticks: the changes are still reported
        assert len(sent) > 10


def test_silence_mutes_then_resumes_after_expiry() -> None:
    router = Router(ROUTE, (), ())
    silences = Silences([Silence(id="s1", matchers={"target": "eth-main"}, starts_at=at(0),
                                 ends_at=at(1800))])
    router.update([alert()], at(0))
    assert router.muted(alert(), at(0), silences) == "silenced by s1"
    sent = run(router, 0, 1800 + INTERVAL, silences)
    assert [t for t, _ in sent] == [WAIT + 30 * INTERVAL]  # the first flush after 1800s
    assert router.muted(alert(), at(1800), silences) is None


def test_silence_after_notification_hides_the_resolution_and_renotifies_later() -> None:
    router = Router(ROUTE, (), ())
    router.update([alert(), alert("NodeHeadStale")], at(0))
    assert len(router.due(at(WAIT), NONE)) == 1
    silences = Silences([Silence(id="s2", matchers={"alertname": "NodeHeadStale"},
                                 starts_at=at(20), ends_at=at(20 + 600))])
    # muting is not a change worth a message
    assert run(router, WAIT + 1, 600, silences) == []
    # after the silence, the still-firing alert is news again
    [(when, note)] = run(router, 600, 700, silences)
    assert when == WAIT + 11 * INTERVAL
    assert names(note.firing) == ["NodeHeadStale/eth-main", "NodeLagging/eth-main"]


def test_muted_the_whole_time_is_not_notified_as_resolved() -> None:
    router = Router(ROUTE, (), ())
    silences = Silences([Silence(id="s3", matchers={"target": "eth-main"}, starts_at=at(0),
                                 ends_at=at(99999))])
    router.update([alert()], at(0))
    assert run(router, 0, 300, silences) == []
    router.update([alert(status="resolved")], at(301))
    assert run(router, 301, 99999 + 600, silences) == []
    assert router.next_due(at(400)) is None


def test_maintenance_window_mutes_and_then_notifies() -> None:
    window = MaintenanceConfig(name="eth-upgrade", start="11:55", duration=900,
                               match={"type": "ethereum"})
    router = Router(ROUTE, (), (window,))
    router.update([alert(type="ethereum"), alert("TargetDown", "btc", type="bitcoin")], at(0))
    assert router.muted(alert(type="ethereum"), at(0), NONE) == "maintenance eth-upgrade"
    [note] = router.due(at(WAIT), NONE)
    assert names(note.firing) == ["TargetDown/btc"]
    sent = run(router, WAIT + 1, 700)
    # the window ends at 12:10 (600s); the next flush of the eth group is at 610s
    assert [(t, names(n.firing)) for t, n in sent] == [(610, ["NodeLagging/eth-main"])]


def test_builtin_inhibition_target_down() -> None:
    router = Router(ROUTE, (), ())
    lag_1, lag_2 = alert("NodeLagging", "eth-1"), alert("NodeSyncing", "eth-2")
    down_1 = alert("TargetDown", "eth-1")
    router.update([lag_1, lag_2, down_1, alert("NodeHeadStale", "eth-1")], at(0))
    assert router.muted(lag_1, at(0), NONE) == "inhibited by TargetDown"
    assert router.muted(lag_2, at(0), NONE) is None
    assert router.muted(down_1, at(0), NONE) is None
    notes = router.due(at(WAIT), NONE)
    assert sorted(n for note in notes for n in names(note.firing)) == [
        "NodeSyncing/eth-2", "TargetDown/eth-1"]

    # the target comes back: TargetDown resolves, the lag it hid is now news
    router.update([alert("TargetDown", "eth-1", status="resolved")], at(30))
    [note] = router.due(at(WAIT + INTERVAL), NONE)
    assert names(note.firing) == ["NodeHeadStale/eth-1", "NodeLagging/eth-1"]
    assert names(note.resolved) == ["TargetDown/eth-1"]


def test_silenced_source_still_inhibits() -> None:
    router = Router(ROUTE, (), ())
    silences = Silences([Silence(id="quiet", matchers={"alertname": "TargetDown"},
                                 starts_at=at(0), ends_at=at(3600))])
    router.update([alert("TargetDown"), alert("NodeLagging")], at(0))
    assert router.muted(alert("NodeLagging"), at(0), silences) == "inhibited by TargetDown"
    assert router.due(at(WAIT), silences) == []


def test_configured_inhibition_with_equal_labels() -> None:
    rule = InhibitConfig(source_match={"severity": "critical"},
                         target_match={"severity": "warning"}, equal=("target",))
    router = Router(RouteConfig(receiver="r", group_by=("alertname", "target"),
                                group_wait=WAIT), (rule,), ())
    crit = alert("DiskFull", "eth-1", severity="critical")
    warn_same = alert("DiskSlow", "eth-1", severity="warning")
    warn_other = alert("DiskSlow", "eth-2", severity="warning")
    router.update([crit, warn_same, warn_other], at(0))
    assert router.muted(warn_same, at(0), NONE) == "inhibited by DiskFull"
    assert router.muted(warn_other, at(0), NONE) is None
    assert sorted(n for note in router.due(at(WAIT), NONE) for n in names(note.firing)) == [
        "DiskFull/eth-1", "DiskSlow/eth-2"]


def test_an_alert_does_not_inhibit_itself() -> None:
    rule = InhibitConfig(source_match={"alertname": "X"}, target_match={"alertname": "X"},
                         equal=("target",))
    router = Router(ROUTE, (rule,), ())
    router.update([alert("X", "a", replica="1")], at(0))
    assert router.muted(alert("X", "a", replica="1"), at(0), NONE) is None
    router.update([alert("X", "a", replica="2")], at(0))
    assert router.muted(alert("X", "a", replica="1"), at(0), NONE) == "inhibited by X"


def test_snapshot_restore_does_not_renotify_and_keeps_repeat_timing() -> None:
    before = Router(ROUTE, (), ())
    before.update([alert(), alert("TargetDown", "btc")], at(0))
    assert len(before.due(at(WAIT), NONE)) == 2
    before.due(at(WAIT + INTERVAL), NONE)
    saved = json.loads(json.dumps(before.snapshot()))  # what the caller writes to disk

    # the process restarts 10 minutes later; the rules report the same alerts again
    after = Router(ROUTE, (), ())
    after.restore(saved)
    assert after.snapshot() == saved
    after.update([alert(), alert("TargetDown", "btc")], at(600))
    sent = run(after, 600, WAIT + REPEAT + 1)
    assert [(t, names(n.firing)) for t, n in sent] == [
        (WAIT + REPEAT, ["TargetDown/btc"]), (WAIT + REPEAT, ["NodeLagging/eth-main"])]


def test_restore_without_update_keeps_alerts_and_pending_resolution() -> None:
    before = Router(ROUTE, (), ())
    before.update([alert(), alert("NodeHeadStale")], at(0))
    before.due(at(WAIT), NONE)
    before.update([alert("NodeHeadStale", status="resolved")], at(20))
    saved = json.loads(json.dumps(before.snapshot()))

    after = Router(ROUTE, (), ())
    after.restore(saved)
    assert names(after.firing()) == ["NodeLagging/eth-main"]
    [note] = after.due(at(WAIT + INTERVAL), NONE)
    assert names(note.resolved) == ["NodeHeadStale/eth-main"]
    assert note.firing and names(note.firing) == ["NodeLagging/eth-main"]


def test_restore_under_a_changed_route_merges_groups() -> None:
    before = Router(ROUTE, (), ())
    before.update([alert(target="a"), alert(target="b")], at(0))
    before.due(at(WAIT), NONE)
    saved = before.snapshot()
    assert len(saved["groups"]) == 2

    # group_by changed to alertname: both alerts now share one group, both already notified
    after = Router(RouteConfig(receiver="oncall", group_by=("alertname",), group_wait=WAIT,
                               group_interval=INTERVAL, repeat_interval=REPEAT), (), ())
    after.restore(saved)
    assert len(after.snapshot()["groups"]) == 1
    sent = run(after, WAIT + 1, WAIT + REPEAT)
    assert [(t, len(n.firing)) for t, n in sent] == [(WAIT + REPEAT, 2)]


@pytest.mark.parametrize("data", [{"version": 2, "groups": []}, {"version": 1},
                                  {"version": 1, "groups": [{"key": "k"}]}])
def test_restore_rejects_bad_snapshots(data: dict[str, object]) -> None:
    with pytest.raises(AlertError, match="snapshot"):
        Router(ROUTE, (), ()).restore(data)


def test_next_due_reports_overdue_as_now() -> None:
    router = Router(ROUTE, (), ())
    assert router.next_due(at(0)) is None
    router.update([alert()], at(0))
    assert router.next_due(at(100)) == at(100)
    router.due(at(100), NONE)  # a late caller: the next boundary stays on the schedule
    assert router.next_due(at(100)) == at(WAIT + 2 * INTERVAL)
