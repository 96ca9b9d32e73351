"""The location quorum (`[cluster].quorum`): a target's alert fires only when enough of the
locations probing it see the condition hold.

Each (rule, target, location) runs the ordinary state machine (`alerts.state.step`) on that
location's results. The cluster alert (rule, target) fires when at least q_eff locations fire
it, q_eff = min(quorum, fresh locations), a location being fresh while its last result is
younger than the target's window (2 intervals + lease); once firing it resolves when no fresh
location fires it any more (with no fresh location at all it keeps firing: silence is not
recovery). `recheck(now)` applies the same decision when results go stale. The cluster alert
carries the `locations` annotation ("eu, us": where it failed from). Results without a
location (the service watch, followers, Watchdog) are evaluated as `Evaluator` does. Pure:
times come in as arguments; per-location states are persisted with the others under the
target key `target\\x1flocation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from alerts.builtin import RuleSpec
from alerts.evaluate import DETAIL, Evaluator, Transition
from alerts.model import Alert
from alerts.state import AlertState, step
from alerts.store import StateKey

SEP = "\x1f"  # between target and location in a stored per-location state's key
LOCATIONS = "locations"  # kept with the cluster state's values; shown as an annotation


class QuorumEvaluator(Evaluator):
    """`Evaluator` with per-location states: `observe(..., location=...)` and `recheck`."""

    def __init__(self, rules: Sequence[RuleSpec], states: Mapping[StateKey, AlertState],
                 targets: Mapping[str, Mapping[str, str]], *, quorum: int,
                 windows: Mapping[str, float], resolve_after: int = 2) -> None:
        """`windows`: seconds a target's result stays fresh (2 intervals + lease)."""
        self.quorum = quorum
        self.windows = dict(windows)
        # indexed so that one result costs the same with 10 targets or 10,000:
        # (rule, target) → location → state; target → location → time of its last result
        self._loc: dict[tuple[str, str], dict[str, AlertState]] = {}
        self._seen: dict[str, dict[str, datetime]] = {}
        super().__init__(rules, {}, targets, resolve_after)
        self.restore(states)

    def restore(self, states: Mapping[StateKey, AlertState]) -> None:
        plain = {k: s for k, s in states.items() if SEP not in k[1]}
        super().restore(plain)
        known = {r.name for r in self._rules}
        self._loc = {}
        for (rule, key), state in states.items():
            target, sep, location = key.partition(SEP)
            if sep and rule in known:
                self._loc.setdefault((rule, target), {})[location] = state

    def seen(self, target: str, location: str, at: datetime) -> None:
        """A result of `target` from `location` at `at` (a new leader seeds freshness)."""
        times = self._seen.setdefault(target, {})
        if location not in times or times[location] < at:
            times[location] = at

    def reconfigure(self, rules: Sequence[RuleSpec], targets: Mapping[str, Mapping[str, str]],
                    now: datetime) -> list[Alert]:
        ended = super().reconfigure(rules, targets, now)
        known = {r.name for r in rules}
        for key in [k for k in self._loc if k[0] not in known or k[1] not in targets]:
            for location in self._loc.pop(key):
                self._dirty[(key[0], f"{key[1]}{SEP}{location}")] = AlertState()
        return ended

    def observe(self, target: str, labels: Mapping[str, str], values: Mapping[str, Any],
                now: datetime, detail: str = "", location: str = "") -> list[Transition]:
        if not location:
            return super().observe(target, labels, values, now, detail)
        self.seen(target, location, now)
        full = {**labels, "target": target}
        self._labels[target] = full
        out: list[Transition] = []
        for rule in self._select(target, full):
            states = self._loc.get((rule.name, target))
            before = states.get(location, AlertState()) if states else AlertState()
            holds = rule.condition.evaluate(values)
            if not holds and before.phase == "inactive" and before.streak == 0 \
                    and not states and (rule.name, target) not in self._states:
                continue  # the common case: healthy here, nothing anywhere to move
            kept = self._kept(rule, values)
            if detail:
                kept[DETAIL] = detail[:500]
            after, _ = step(before, holds, now, self._timing[rule.name],
                            kept if holds else before.values)
            if after != before:
                if states is None:
                    states = self._loc[(rule.name, target)] = {}
                states[location] = after
                self._dirty[(rule.name, f"{target}{SEP}{location}")] = after
                if after.phase == "inactive" and after.streak == 0:  # nothing to remember
                    del states[location]
                    if not states:
                        del self._loc[(rule.name, target)]
            out += self._decide(rule, target, now)
        return out

    def recheck(self, now: datetime) -> list[Transition]:
        out: list[Transition] = []
        by_name = {r.name: r for r in self._rules}
        for rule_name, target in sorted(self._loc):
            if rule_name in by_name:
                out += self._decide(by_name[rule_name], target, now)
        return out

    def fresh(self, target: str, now: datetime) -> list[str]:
        """The locations whose last result of `target` is younger than its window."""
        window = timedelta(seconds=self.windows.get(target, 0.0))
        return sorted(loc for loc, at in self._seen.get(target, {}).items()
                      if now - at < window)

    def _decide(self, rule: RuleSpec, target: str, now: datetime) -> list[Transition]:
        """Moves the cluster alert (rule, target) as its locations stand at `now`."""
        fresh = self.fresh(target, now)
        firing = {loc: s for loc, s in self._loc.get((rule.name, target), {}).items()
                  if s.phase == "firing" and loc in fresh}
        key = (rule.name, target)
        before = self._states.get(key, AlertState())
        if before.phase != "firing":
            needed = min(self.quorum, len(fresh))
            if needed < 1 or len(firing) < needed:
                return []
            first = min(firing, key=lambda loc: (firing[loc].since or now, loc))
            since = firing[first].since or now
            values = {**firing[first].values, LOCATIONS: ", ".join(sorted(firing))}
            after = AlertState("firing", since, now, None, 1, 0, values)
            self._states[key] = self._dirty[key] = after
            return [Transition(key, "firing", self._alert(rule, target, values, since))]
        if firing:
            shown = ", ".join(sorted(firing))
            if before.values.get(LOCATIONS) != shown:  # one more (or one fewer) location
                after = replace(before, values={**before.values, LOCATIONS: shown})
                self._states[key] = self._dirty[key] = after
            return []
        if not fresh:  # nobody sees it now: not a recovery
            return []
        self._states[key] = self._dirty[key] = AlertState(resolved_at=now)
        alert = replace(self._alert(rule, target, before.values, before.since),
                        status="resolved", ends_at=now)
        return [Transition(key, "resolved", alert)]

    def _alert(self, rule: RuleSpec, target: str, values: Mapping[str, Any],
               since: datetime | None) -> Alert:
        alert = super()._alert(rule, target, values, since)
        if values.get(LOCATIONS):
            return replace(alert, annotations={**alert.annotations,
                                               LOCATIONS: str(values[LOCATIONS])})
        return alert
