"""The values alerting passes between its parts: alerts, and notifications of groups.

An `Alert` is one rule firing for one target (or one alert received from Alertmanager).
Its labels always hold `alertname`, `severity` and, for native alerts, `target` and `type`
plus the target's own labels. A `Notification` is what a receiver is asked to send for one
group at one moment. Times are aware UTC datetimes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

Severity = Literal["critical", "warning", "info"]
AlertStatus = Literal["firing", "resolved"]


def matches(matchers: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Label equality matching, as rules, routes, silences and windows use it: every matcher
    label must be present with that value."""
    return all(labels.get(k) == v for k, v in matchers.items())


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable 16-hex-digit id of a label set (order does not matter)."""
    text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Alert:
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)  # summary, value, detail
    status: AlertStatus = "firing"
    starts_at: datetime | None = None  # when the condition began to hold
    ends_at: datetime | None = None  # when it resolved
    source: Literal["native", "alertmanager"] = "native"

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)


@dataclass(frozen=True)
class Notification:
    """One message's worth: the group's alerts that are firing and those just resolved."""

    receiver: str
    group_key: str  # stable id of the group (route + group_by label values)
    group_labels: Mapping[str, str]
    firing: tuple[Alert, ...] = ()
    resolved: tuple[Alert, ...] = ()
