"""`Evaluator.reconfigure` (a config reload): states of remaining rules on remaining targets
are kept as they are; the others are dropped, deleted from the store, and a firing one comes
back as resolved with the fingerprint it was announced with."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.builtin import RuleSpec
from alerts.evaluate import Evaluator
from alerts.expr import parse

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def rule(name: str, match: dict[str, str] | None = None) -> RuleSpec:
    return RuleSpec(name, parse("peers < 1"), match or {}, severity="critical")


def test_remaining_states_kept_and_dropped_firing_ones_resolved() -> None:
    targets = {"a": {"type": "ethereum"}, "b": {"type": "ethereum"}}
    ev = Evaluator([rule("Stays"), rule("Goes")], {}, targets)
    for name, labels in targets.items():
        ev.observe(name, labels, {"peers": 0}, T0)
    ev.take_dirty()
    firing = {(a.name, a.labels["target"]): a for a in ev.firing()}
    assert set(firing) == {("Stays", "a"), ("Stays", "b"), ("Goes", "a"), ("Goes", "b")}

    later = T0 + timedelta(minutes=5)
    ended = ev.reconfigure([rule("Stays"), rule("New")], {"a": {"type": "ethereum"}}, later)

    assert {(a.name, a.labels["target"]) for a in ended} == {
        ("Goes", "a"), ("Goes", "b"), ("Stays", "b")}
    for alert in ended:
        announced = firing[(alert.name, alert.labels["target"])]
        assert alert.fingerprint == announced.fingerprint
        assert (alert.status, alert.ends_at, alert.starts_at) == \
            ("resolved", later, announced.starts_at)
    now_firing = ev.firing()
    assert [(a.name, a.labels["target"]) for a in now_firing] == [("Stays", "a")]
    assert now_firing[0].starts_at == firing[("Stays", "a")].starts_at
    dropped = ev.take_dirty()
    assert set(dropped) == {("Goes", "a"), ("Goes", "b"), ("Stays", "b")}
    assert all(s.phase == "inactive" and s.streak == 0 for s in dropped.values())
    assert [r.name for r in ev.rules] == ["Stays", "New"]


def test_a_rule_that_no_longer_selects_a_target_lets_its_state_go() -> None:
    ev = Evaluator([rule("R", {"team": "x"})], {}, {"a": {"team": "x"}})
    ev.observe("a", {"team": "x"}, {"peers": 0}, T0)
    assert ev.reconfigure([rule("R", {"team": "y"})], {"a": {"team": "x"}}, T0)
    assert ev.firing() == []
