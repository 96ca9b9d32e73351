"""`Evaluator.observe`'s hot path (issue 16): rules matched once per target, `step` skipped
for a healthy target, summary templates parsed once. It must decide exactly as the plain
algorithm does (`reference` below: every rule matched, `step` run and the kept values built
on every result), whatever the results, labels and rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.builtin import BUILTINS, RuleSpec
from alerts.evaluate import DETAIL, REASON, Evaluator, Transition
from alerts.expr import parse
from alerts.model import matches
from alerts.state import AlertState, Timing, step
from alerts.store import StateKey
from alerts.template import pieces

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
RULES = (*BUILTINS,
         RuleSpec("SlowProd", parse("duration_seconds > 1"), {"env": "prod"}, for_=30,
                  summary="{target} takes {duration_seconds}s ({status_code})"),
         RuleSpec("Flaky", parse("success == false or status_code >= 500"), {}, failures=2,
                  summary="{target}: {failure_reason}"))


class Reference:
    """The evaluation as it was before the fast path, kept as the specification (alerts are
    described by the evaluator under test, which must have seen the result first)."""

    def __init__(self, rules: Sequence[RuleSpec]) -> None:
        self.rules = list(rules)
        self.states: dict[StateKey, AlertState] = {}
        self.dirty: dict[StateKey, AlertState] = {}

    def observe(self, ev: Evaluator, target: str, labels: Mapping[str, str],
                values: Mapping[str, Any], now: datetime, detail: str) -> list[Transition]:
        full = {**labels, "target": target}
        out: list[Transition] = []
        for rule in self.rules:
            if not matches(rule.match, full):
                continue
            key = (rule.name, target)
            before = self.states.get(key, AlertState())
            holds = rule.condition.evaluate(values)
            wanted = [*rule.condition.names,
                      *(n for kind, n in pieces(rule.summary) if kind == "name"), REASON]
            kept = {n: values[n] for n in wanted if n in values}
            if detail:
                kept[DETAIL] = detail[:500]
            after, change = step(before, holds, now, Timing(rule.for_, rule.failures, 2),
                                 kept if holds else before.values)
            if after != before:
                self.states[key] = after
                self.dirty[key] = after
            if change is not None:
                shown = before.values if change == "resolved" else after.values
                if change == "resolved":
                    alert = replace(ev._alert(rule, target, shown, before.since),
                                    status="resolved", ends_at=now)
                else:
                    alert = ev._alert(rule, target, shown, after.since)
                out.append(Transition(key, change, alert))
        return out


values = st.fixed_dictionaries({
    "success": st.booleans(),
    "duration_seconds": st.sampled_from([0.01, 0.5, 2.0]),
    "failure_reason": st.sampled_from(["", "refused", "timeout"]),
}, optional={
    "status_code": st.sampled_from([200, 503]),
    "cert_expiry_days": st.sampled_from([3.0, 90.0]),
    "block_lag": st.integers(0, 9),
})
results = st.lists(st.tuples(st.sampled_from(["a", "b"]),
                             st.sampled_from([{"type": "http", "env": "prod"},
                                              {"type": "http", "env": "dev"},
                                              {"type": "ethereum"}]),
                             values, st.sampled_from(["", "connection refused"]),
                             st.integers(0, 90)),
                   max_size=40)


@settings(max_examples=150, deadline=None)
@given(results)
def test_decides_as_the_plain_algorithm(
        seq: list[tuple[str, dict[str, str], dict[str, Any], str, int]]) -> None:
    ev = Evaluator(RULES, {}, {"a": {"type": "http"}, "b": {"type": "http"}})
    ref = Reference(RULES)
    now = T0
    for target, labels, vals, detail, step_s in seq:
        now += timedelta(seconds=step_s)
        got = ev.observe(target, labels, vals, now, detail)  # first: it records the labels
        assert got == ref.observe(ev, target, labels, vals, now, detail)
        assert ev.take_dirty() == ref.dirty
        ref.dirty = {}
    assert sorted(ev._states.items()) == sorted(ref.states.items())


def test_rules_follow_a_target_whose_labels_change() -> None:
    """The rules selected for a target are remembered with its labels: new labels (the
    target's changed by a reload) select anew, and so does a reload of the rules."""
    prod_only = RuleSpec("Down", parse("success == false"), {"env": "prod"}, failures=1)
    ev = Evaluator([prod_only], {}, {"a": {"env": "dev"}})
    down = {"success": False}
    assert ev.observe("a", {"env": "dev"}, down, T0) == []
    assert [t.change for t in ev.observe("a", {"env": "prod"}, down, T0)] == ["firing"]
    ev.reconfigure([replace(prod_only, name="Other", match={"env": "dev"})],
                   {"a": {"env": "dev"}}, T0)
    assert [t.change for t in ev.observe("a", {"env": "dev"}, down, T0)] == ["firing"]
