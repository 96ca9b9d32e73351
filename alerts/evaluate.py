"""Rules applied to probe results: for each result, every rule whose `match` selects the
target is evaluated, and `alerts.state.step` moves that (rule, target) pair along.

The evaluator only keeps the states and turns them into `Alert` values; what to send and
when is the router's business. States that changed are collected for the caller to persist.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from alerts.builtin import RuleSpec
from alerts.model import Alert, matches
from alerts.state import AlertState, Change, Timing, step
from alerts.store import StateKey
from alerts.template import format_value, pieces, render

DETAIL = "failure_detail"  # kept with the values: the probe's words for what went wrong
REASON = "failure_reason"  # kept too: the probe's reason (timeout, status, lag ...)
_INACTIVE = AlertState()  # frozen: one shared value for every (rule, target) never seen


@dataclass(frozen=True)
class Transition:
    key: StateKey
    change: Change
    alert: Alert


def _value(rule: RuleSpec, values: Mapping[str, Any]) -> str:
    """The values that tripped the rule, as "block_lag = 12"."""
    return ", ".join(f"{n} = {format_value(values[n])}" for n in rule.condition.names
                     if n in values)


class Evaluator:
    def __init__(self, rules: Sequence[RuleSpec], states: Mapping[StateKey, AlertState],
                 targets: Mapping[str, Mapping[str, str]], resolve_after: int = 2) -> None:
        """`targets`: every target's labels (with `type`), known up front so that an alert
        restored after a restart has the same labels, hence the same fingerprint."""
        self._rules = list(rules)
        self._resolve_after = resolve_after
        self._timing = {r.name: Timing(r.for_, r.failures, resolve_after) for r in rules}
        known = {r.name for r in rules}
        # states of rules no longer configured are dropped, quietly
        self._states = {k: s for k, s in states.items() if k[0] in known}
        self._labels = {name: {**labels, "target": name} for name, labels in targets.items()}
        self._dirty: dict[StateKey, AlertState] = {}
        # per target: the labels last seen and the rules that select them. Every probe
        # result asks; labels change only with a reload, so matching runs once per target
        self._selected: dict[str, tuple[dict[str, str], list[RuleSpec]]] = {}

    @property
    def rules(self) -> list[RuleSpec]:
        return list(self._rules)

    def reconfigure(self, rules: Sequence[RuleSpec], targets: Mapping[str, Mapping[str, str]],
                    now: datetime) -> list[Alert]:
        """Take new rules and targets in place (a config reload). The state of a rule that
        still exists, on a target it still selects, is kept as it is; the others are dropped
        (and forgotten by the store at the next flush). Returns the alerts that were firing
        among the dropped, as resolved now, so that the receivers hear of their end."""
        by_name = {r.name: r for r in rules}
        labels = {name: {**lv, "target": name} for name, lv in targets.items()}
        old_rules = {r.name: r for r in self._rules}
        ended: list[Alert] = []
        for key, state in list(self._states.items()):
            rule, target = by_name.get(key[0]), labels.get(key[1])
            if rule is not None and target is not None and matches(rule.match, target):
                continue
            if state.phase == "firing":  # as it was announced, so the same fingerprint
                alert = self._alert(old_rules[key[0]], key[1], state.values, state.since)
                ended.append(replace(alert, status="resolved", ends_at=now))
            del self._states[key]
            self._dirty[key] = AlertState()  # deleted from the store
        self._rules = list(rules)
        self._timing = {r.name: Timing(r.for_, r.failures, self._resolve_after) for r in rules}
        self._labels = labels
        self._selected = {}
        return ended

    def restore(self, states: Mapping[StateKey, AlertState]) -> None:
        """Replace every state with stored ones (a new alerting leader taking over)."""
        known = {r.name for r in self._rules}
        self._states = {k: s for k, s in states.items() if k[0] in known}
        self._dirty = {}

    def recheck(self, now: datetime) -> list[Transition]:
        """Changes that come with time alone; none here (see `alerts.quorum`)."""
        return []

    def observe(self, target: str, labels: Mapping[str, str], values: Mapping[str, Any],
                now: datetime, detail: str = "", location: str = "") -> list[Transition]:
        """Evaluate every rule for one target's new values; returns the phase changes.
        `location` is for `alerts.quorum.QuorumEvaluator`; here every result counts alike."""
        full = {**labels, "target": target}
        self._labels[target] = full
        out: list[Transition] = []
        for rule in self._select(target, full):
            key = (rule.name, target)
            before = self._states.get(key, _INACTIVE)
            holds = rule.condition.evaluate(values)
            if not holds and before.phase == "inactive" and before.streak == 0:
                continue  # the common case, a healthy target: `step` would change nothing
            kept = before.values
            if holds:  # what the state keeps of the values is needed only when it holds
                fresh = self._kept(rule, values)
                if detail:
                    fresh[DETAIL] = detail[:500]
                kept = fresh
            after, change = step(before, holds, now, self._timing[rule.name], kept)
            if after is not before and after != before:
                self._states[key] = after
                self._dirty[key] = after
            if change is not None:
                shown = before.values if change == "resolved" else after.values
                if change == "resolved":  # what held, until now
                    alert = replace(self._alert(rule, target, shown, before.since),
                                    status="resolved", ends_at=now)
                else:
                    alert = self._alert(rule, target, shown, after.since)
                out.append(Transition(key, change, alert))
        return out

    def _select(self, target: str, labels: dict[str, str]) -> list[RuleSpec]:
        """The rules whose `match` selects `labels` (the target's, with `target`)."""
        selected = self._selected.get(target)
        if selected is None or selected[0] != labels:
            selected = self._selected[target] = (
                labels, [r for r in self._rules if matches(r.match, labels)])
        return selected[1]

    def _alert(self, rule: RuleSpec, target: str, values: Mapping[str, Any],
               since: datetime | None) -> Alert:
        """A firing alert of `rule` on `target`, described from the values its state kept."""
        # a synthetic target may set its own severity (an SLO's burn-rate pairs do);
        # configured targets cannot (it is a reserved label)
        labels = {"severity": rule.severity, **self._labels.get(target, {"target": target}),
                  "alertname": rule.name}
        summary = (render(rule.summary, {**values, **labels}) if rule.summary
                   else f"{rule.name} on {target}")
        annotations = {"summary": summary, "condition": rule.condition.text,
                       "value": _value(rule, values)}
        if rule.runbook_url:
            annotations["runbook_url"] = rule.runbook_url
        if rule.dashboard_url:
            annotations["dashboard_url"] = rule.dashboard_url
        if values.get(DETAIL):
            annotations["detail"] = str(values[DETAIL])
        if values.get(REASON):  # the probe's failure_reason, which messages word plainly
            annotations[REASON] = str(values[REASON])
        return Alert(labels, annotations, "firing", since)

    def firing(self) -> list[Alert]:
        """Every alert that is firing now (with its last rendered annotations)."""
        return [a for a, phase in self._current() if phase == "firing"]

    def current(self) -> list[tuple[Alert, str]]:
        """Pending and firing alerts with their phase, for the API and the bot."""
        return list(self._current())

    def _current(self) -> Iterable[tuple[Alert, str]]:
        by_name = {r.name: r for r in self._rules}
        for (rule_name, target), state in sorted(self._states.items()):
            if state.phase != "inactive":
                yield (self._alert(by_name[rule_name], target, state.values, state.since),
                       state.phase)

    @staticmethod
    def _kept(rule: RuleSpec, values: Mapping[str, Any]) -> dict[str, Any]:
        """What a state remembers of the values that made it hold: those the condition and
        the summary name (so messages after a restart still read right)."""
        return {n: values[n] for n in _wanted(rule.condition.names, rule.summary)
                if n in values}

    def take_dirty(self) -> dict[StateKey, AlertState]:
        dirty, self._dirty = self._dirty, {}
        return dirty


@functools.lru_cache(maxsize=1024)
def _wanted(names: tuple[str, ...], summary: str) -> tuple[str, ...]:
    """The value names a condition and a summary template use (parsed once per rule)."""
    return (*names, *(n for kind, n in pieces(summary) if kind == "name"), REASON)
