"""The location quorum with explicit times: per-location states, the cluster alert firing at
q_eff = min(quorum, fresh locations) and resolving when the fresh locations pass, results
going stale, the `locations` annotation in the alert and the Telegram message, and a restart
from the persisted states."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.builtin import BUILTINS
from alerts.model import Notification
from alerts.quorum import QuorumEvaluator
from alerts.state import AlertState
from alerts.store import StateKey
from alerts.telegram_format import format_notification

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
S = timedelta(seconds=1)
DOWN = next(r for r in BUILTINS if r.name == "TargetDown")  # 3 failures in a row
TARGETS = {"eth": {"type": "http"}}
WINDOW = 2 * 10 + 5  # 2 intervals + lease


def evaluator(quorum: int = 2,
              states: dict[StateKey, AlertState] | None = None) -> QuorumEvaluator:
    return QuorumEvaluator([DOWN], states or {}, TARGETS, quorum=quorum,
                           windows={"eth": WINDOW})


def probe(ev: QuorumEvaluator, location: str, ok: bool, at: datetime) -> list[str]:
    values = {"success": ok, "failure_reason": "" if ok else "timeout"}
    return [t.change for t in ev.observe("eth", {"type": "http"}, values, at, "",
                                         location)]


def test_one_location_failing_at_quorum_two_fires_nothing() -> None:
    ev = evaluator()
    changes: list[str] = []
    for i in range(6):
        changes += probe(ev, "eu", False, T0 + i * 10 * S)
        changes += probe(ev, "us", True, T0 + i * 10 * S)
    assert changes == [] and ev.firing() == []


def test_both_locations_failing_fire_once_naming_both_and_resolve_once() -> None:
    ev = evaluator()
    changes: list[str] = []
    for i in range(4):
        changes += probe(ev, "eu", False, T0 + i * 10 * S)
        changes += probe(ev, "us", False, T0 + i * 10 * S)
    assert changes == ["firing"]
    (alert,) = ev.firing()
    assert alert.annotations["locations"] == "eu, us"
    text = format_notification(Notification("tg", "g", {}, firing=(alert,)), T0).text
    assert "from eu, us" in text
    changes = []
    for i in range(4, 8):  # eu recovers first: us still fires it
        changes += probe(ev, "eu", True, T0 + i * 10 * S)
        if i < 6:
            changes += probe(ev, "us", False, T0 + i * 10 * S)
        else:
            changes += probe(ev, "us", True, T0 + i * 10 * S)
    assert changes == ["resolved"]
    assert ev.firing() == []


def test_a_stale_location_lowers_the_effective_quorum() -> None:
    ev = evaluator()
    probe(ev, "us", True, T0)  # us reports once, then stops (its instance died)
    changes: list[str] = []
    for i in range(3):  # eu fails a third time at 20 s: us (last seen at 0 s) still fresh
        changes += probe(ev, "eu", False, T0 + i * 10 * S)
    assert changes == [] and ev.fresh("eth", T0 + 20 * S) == ["eu", "us"]
    assert probe(ev, "eu", False, T0 + 30 * S) == ["firing"]  # us stale: quorum 1
    assert ev.fresh("eth", T0 + 30 * S) == ["eu"]
    assert ev.firing()[0].annotations["locations"] == "eu"


def test_staleness_alone_fires_on_the_timer() -> None:
    ev = evaluator()
    for i in range(3):
        probe(ev, "eu", False, T0 + i * 10 * S)
        if i < 2:
            probe(ev, "us", True, T0 + i * 10 * S)
    assert ev.firing() == []
    assert [t.change for t in ev.recheck(T0 + 30 * S)] == []  # us's last result: 10 s
    assert [t.change for t in ev.recheck(T0 + 36 * S)] == ["firing"]  # us stale now


def test_resolve_needs_fresh_locations_passing_and_no_news_is_not_recovery() -> None:
    ev = evaluator(quorum=1)
    for i in range(3):
        probe(ev, "eu", False, T0 + i * 10 * S)
    assert [a.name for a in ev.firing()] == ["TargetDown"]
    assert ev.recheck(T0 + 600 * S) == []  # nothing fresh at all: keeps firing
    assert [a.name for a in ev.firing()] == ["TargetDown"]
    assert probe(ev, "eu", True, T0 + 601 * S) == []
    assert probe(ev, "eu", True, T0 + 611 * S) == ["resolved"]


def test_a_restart_from_the_persisted_states_keeps_the_phase() -> None:
    ev = evaluator()
    stored: dict[StateKey, AlertState] = {}
    for i in range(3):
        probe(ev, "eu", False, T0 + i * 10 * S)
        probe(ev, "us", False, T0 + i * 10 * S)
        stored.update(ev.take_dirty())
    assert ev.firing()
    again = evaluator(states={k: v for k, v in stored.items()
                              if v.phase != "inactive" or v.streak})
    (alert,) = again.firing()
    assert alert.annotations["locations"] == "eu, us"
    assert again.recheck(T0 + 21 * S) == []  # no freshness known yet: no decision
    changes = probe(again, "eu", False, T0 + 30 * S) + probe(again, "us", False, T0 + 30 * S)
    assert changes == []  # not fired again
    changes = []
    for i in range(4, 6):
        changes += probe(again, "eu", True, T0 + i * 10 * S)
        changes += probe(again, "us", True, T0 + i * 10 * S)
    assert changes == ["resolved"]
