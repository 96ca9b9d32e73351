"""The `[[slos]]` list: service level objectives the monitor evaluates from its own history
(`monitor.runtime.slo`) and `crypitor rules export` writes as recording and alerting rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from catalog.metrics import WEBHOOK_LATENCY
from monitor.config.decode import Decoder
from monitor.config.durations import format_duration
from probes.base import OptionError, duration

MIN_WINDOW = 3600.0  # an SLO over less than an hour has no budget worth burning
MAX_WINDOW = 30 * 86400.0  # what the SLO history keeps (monitor.runtime.slo.RETENTION)


@dataclass(frozen=True)
class SloConfig:
    name: str
    kind: Literal["probe", "webhook_delivery"] = "probe"
    match: Mapping[str, str] = field(default_factory=dict)  # probe kind: which targets
    objective: float = 99.9  # percent
    window: float = duration(30 * 86400.0)
    # webhook_delivery kind: a delivery counts as good when it arrived this soon after the
    # event's acceptance; one of the delivery latency histogram's buckets, so the exported
    # rules can count exactly what the monitor counts
    within: float = duration(0.0)

    def __post_init__(self) -> None:
        if not self.name or not self.name.isprintable():
            raise OptionError("name", "must be a non-empty name without control characters",
                              self.name)
        if not 0 < self.objective < 100:
            raise OptionError("objective", "must be a percentage above 0 and below 100",
                              self.objective)
        if not MIN_WINDOW <= self.window <= MAX_WINDOW:
            raise OptionError("window", f"must be from {format_duration(MIN_WINDOW)} to "
                              f"{format_duration(MAX_WINDOW)}", format_duration(self.window))
        if self.kind == "probe" and self.within:
            raise OptionError("within", 'is for kind = "webhook_delivery" only',
                              format_duration(self.within))
        if self.kind == "webhook_delivery":
            if self.match:
                raise OptionError("match", 'is for kind = "probe" only', dict(self.match))
            if self.within and self.within not in WEBHOOK_LATENCY.buckets:
                raise OptionError("within", "must be one of the delivery latency histogram's "
                                  "buckets (" + ", ".join(_bucket(b) for b in
                                                          WEBHOOK_LATENCY.buckets) + ")",
                                  format_duration(self.within))

    @property
    def ratio(self) -> float:
        """The objective as a ratio (99.9 → 0.999)."""
        return self.objective / 100

    @property
    def delivered_within(self) -> float:
        """webhook_delivery kind: `within`, one minute when not set."""
        return self.within or 60.0


def _bucket(seconds: float) -> str:
    return f"{seconds * 1000:g}ms" if seconds < 1 else format_duration(seconds)


def decode_slos(d: Decoder, raw: object) -> tuple[SloConfig, ...]:
    if not isinstance(raw, list):
        d.error("slos", "must be a list of [[slos]] tables", raw)
        return ()
    out: list[SloConfig] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        slo = d.table(SloConfig, item, f"slos[{i}]")
        if slo is None:
            continue
        if slo.name in seen:
            d.error(f"slos[{i}].name", f"is already used by slos[{seen[slo.name]}]", slo.name)
            continue
        seen[slo.name] = i
        out.append(slo)
    return tuple(out)
