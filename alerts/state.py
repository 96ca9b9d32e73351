"""The alert state machine: the one place that decides when an alert of one rule for one
target starts pending, fires, and resolves.

    inactive ──holds──▶ pending ──holds for `for` (or `failures` times running)──▶ firing
        ▲                  │                                                       │
        └──does not hold───┘◀───────── does not hold `resolve_after` times running ─┘

A condition that cannot be evaluated (a value the target did not report) counts as not
holding, as an absent series does for Prometheus. `resolve_after` consecutive clean
evaluations are needed to resolve, so a flapping target does not resolve and fire again on
every probe. The machine is pure: times come in as arguments, and `AlertState` is a plain
value the caller persists (as JSON) so that a restart neither forgets a firing alert nor
fires it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

Phase = Literal["inactive", "pending", "firing"]
Change = Literal["pending", "firing", "resolved", "cleared"]  # cleared: pending → inactive
RESOLVE_AFTER = 2  # clean evaluations in a row before a firing alert resolves


@dataclass(frozen=True)
class Timing:
    """How a rule fires: after holding `for_` seconds, or (failures > 0) after holding on
    that many evaluations in a row, whichever the rule uses."""

    for_: float = 0.0
    failures: int = 0
    resolve_after: int = RESOLVE_AFTER


@dataclass(frozen=True)
class AlertState:
    phase: Phase = "inactive"
    since: datetime | None = None  # when the condition began to hold
    fired_at: datetime | None = None
    resolved_at: datetime | None = None
    streak: int = 0  # evaluations in a row that held
    clean: int = 0  # evaluations in a row that did not hold, while firing
    values: Mapping[str, Any] = field(default_factory=dict)  # what tripped it, last seen

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("since", "fired_at", "resolved_at"):
            value = out[key]
            out[key] = value.isoformat() if value is not None else None
        out["values"] = dict(self.values)
        return out

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> AlertState:
        def when(key: str) -> datetime | None:
            value = data.get(key)
            return datetime.fromisoformat(value) if value else None

        phase = data.get("phase", "inactive")
        if phase not in ("inactive", "pending", "firing"):
            phase = "inactive"
        return AlertState(phase, when("since"), when("fired_at"), when("resolved_at"),
                          int(data.get("streak", 0)), int(data.get("clean", 0)),
                          dict(data.get("values", {})))


def step(state: AlertState, holds: bool | None, now: datetime, timing: Timing,
         values: Mapping[str, Any]) -> tuple[AlertState, Change | None]:
    """The state after one evaluation, and the change it made (None: no change of phase)."""
    if holds:
        streak = state.streak + 1
        if state.phase == "firing":
            return replace(state, streak=streak, clean=0, values=values), None
        since = state.since if state.phase == "pending" and state.since else now
        due = (streak >= timing.failures if timing.failures > 0
               else (now - since).total_seconds() >= timing.for_)
        if due:
            return AlertState("firing", since, now, None, streak, 0, values), "firing"
        change: Change | None = None if state.phase == "pending" else "pending"
        return AlertState("pending", since, None, None, streak, 0, values), change
    if state.phase == "pending":
        return AlertState(), "cleared"
    if state.phase == "firing":
        clean = state.clean + 1
        if clean >= timing.resolve_after:
            return AlertState(resolved_at=now), "resolved"
        return replace(state, streak=0, clean=clean), None
    return (state if state.streak == 0 else replace(state, streak=0)), None
