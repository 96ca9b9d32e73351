"""What the monitor knows about each target: its last result and running counts.

One `TargetState` per target, updated by the scheduler after every probe and read by the
metrics collector, the HTTP API and the status page. It only records; it never does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from monitor.config import TargetConfig
from probes.base import ProbeResult

Flip = Literal["up", "down"]


@dataclass(eq=False, slots=True)
class TargetState:
    config: TargetConfig
    last: ProbeResult | None = None
    last_success: ProbeResult | None = None
    successes: int = 0
    failures: int = 0
    skipped: int = 0
    consecutive_failures: int = 0
    since: datetime | None = None  # when the target last became up or down
    running: bool = False
    failures_by_reason: dict[str, int] | None = None  # lazily: most targets never fail

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def up(self) -> bool | None:
        return None if self.last is None else self.last.success

    def record(self, result: ProbeResult) -> Flip | None:
        """Store `result`; say whether the target flipped (first result counts as a flip
        only when it is a failure, so a healthy start stays quiet)."""
        was = self.up
        self.last = result
        if result.success:
            self.successes += 1
            self.consecutive_failures = 0
            self.last_success = result
        else:
            self.failures += 1
            self.consecutive_failures += 1
            reason = result.reason.value if result.reason else "unknown"
            counts = self.failures_by_reason
            if counts is None:
                counts = self.failures_by_reason = {}
            counts[reason] = counts.get(reason, 0) + 1
        if was == result.success:
            return None
        self.since = result.started_at
        if was is None and result.success:
            return None
        return "up" if result.success else "down"


def last_good(states: Mapping[str, TargetState], name: str) -> ProbeResult | None:
    """The last result of target `name` if it was a success: what a `reference` may use
    (a failed or absent reference gives no lag rather than a made-up one)."""
    state = states.get(name)
    last = state.last if state else None
    return last if last is not None and last.success else None
