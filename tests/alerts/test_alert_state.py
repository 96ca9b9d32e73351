"""The alert state machine, step by step with explicit times."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from alerts.state import AlertState, Timing, step

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def run(timing: Timing, verdicts: Sequence[bool | None], every: float = 10.0,
        state: AlertState | None = None) -> tuple[AlertState, list[str | None]]:
    state = state or AlertState()
    changes: list[str | None] = []
    for i, holds in enumerate(verdicts):
        state, change = step(state, holds, T0 + i * every * S, timing, {"v": i})
        changes.append(change)
    return state, changes


def test_failures_fire_on_the_nth_in_a_row_and_resolve_after_two_clean() -> None:
    timing = Timing(failures=3)
    state, changes = run(timing, [True, True, True, True, False, False])
    assert changes == ["pending", None, "firing", None, None, "resolved"]
    assert state.phase == "inactive" and state.resolved_at == T0 + 50 * S


def test_a_failure_streak_broken_before_the_threshold_never_fires() -> None:
    _, changes = run(Timing(failures=3), [True, True, False, True, True, False])
    assert "firing" not in changes
    assert changes == ["pending", None, "cleared", "pending", None, "cleared"]


def test_for_counts_time_since_the_condition_began() -> None:
    state, changes = run(Timing(for_=30), [True, True, True, True])
    assert changes == ["pending", None, None, "firing"]
    assert state.since == T0 and state.fired_at == T0 + 30 * S


def test_no_for_fires_at_once() -> None:
    _, changes = run(Timing(), [True])
    assert changes == ["firing"]


def test_flapping_while_firing_does_not_resolve() -> None:
    state, changes = run(Timing(failures=3), [True] * 3 + [False, True] * 5)
    assert changes.count("firing") == 1 and "resolved" not in changes
    assert state.phase == "firing" and state.fired_at == T0 + 20 * S


def test_unknown_counts_as_not_holding() -> None:
    _, changes = run(Timing(for_=0), [True, None, None])
    assert changes == ["firing", None, "resolved"]
    _, changes = run(Timing(for_=60), [True, None])
    assert changes == ["pending", "cleared"]


def test_state_survives_json_round_trip_mid_streak() -> None:
    timing = Timing(failures=3)
    state, _ = run(timing, [True, True])
    again = AlertState.from_json(state.to_json())
    assert again == state
    after, change = step(again, True, T0 + 20 * S, timing, {})
    assert change == "firing" and after.since == T0
    assert AlertState.from_json({"phase": "bogus"}) == AlertState()
