"""Inhibition: a firing source alert mutes the target alerts that share its `equal` labels.

The built-in rules mute a node's lag, staleness and syncing alerts while the node is down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from alerts.model import Alert, matches

# The shape of monitor/config/alertconfig.py's InhibitConfig: alerts/ may not import monitor/,
# so it states what it reads.


class InhibitSpec(Protocol):
    @property
    def source_match(self) -> Mapping[str, str]: ...
    @property
    def target_match(self) -> Mapping[str, str]: ...
    @property
    def equal(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class InhibitRule:
    source_match: Mapping[str, str]
    target_match: Mapping[str, str]
    equal: tuple[str, ...] = ("target",)


BUILTIN_INHIBIT = tuple(InhibitRule({"alertname": "TargetDown"}, {"alertname": name})
                        for name in ("NodeLagging", "NodeHeadStale", "NodeSyncing"))


class Inhibitor:
    """The firing source alerts of every rule, indexed by their `equal` label values."""

    def __init__(self, rules: Sequence[InhibitRule], firing: Iterable[Alert]) -> None:
        firing = list(firing)
        self._rules: list[tuple[InhibitRule, dict[tuple[str, ...], list[Alert]]]] = []
        for rule in rules:
            index: dict[tuple[str, ...], list[Alert]] = {}
            for a in firing:
                if matches(rule.source_match, a.labels):
                    index.setdefault(_values(a.labels, rule.equal), []).append(a)
            self._rules.append((rule, index))

    def source(self, alert: Alert) -> Alert | None:
        for rule, index in self._rules:
            if matches(rule.target_match, alert.labels):
                for src in index.get(_values(alert.labels, rule.equal), ()):
                    if src.fingerprint != alert.fingerprint:  # an alert never mutes itself
                        return src
        return None


def _values(labels: Mapping[str, str], names: Sequence[str]) -> tuple[str, ...]:
    return tuple(labels.get(n, "") for n in names)  # absent on both sides counts as equal
