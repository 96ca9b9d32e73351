"""The rules alerting evaluates: the built-in ones every install gets, and configured ones
from `[[alerts.rules]]` (which may replace a built-in by using its name).

A rule applies to a target when every key of its `match` equals the target's label of that
name; `type` and `target` (the target's name) count as labels. The webhook service shows up
as a synthetic target of type `service` whose values are `delivery_failure_ratio`,
`oldest_pending_age_seconds` and `queue_depth`; each chain it follows as one of type
`follower` (named `follower-<chain>`, label `chain`) whose value is `deep_reorgs_1h`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from alerts.expr import Condition, parse
from alerts.model import Severity


@dataclass(frozen=True)
class RuleSpec:
    name: str
    condition: Condition
    match: Mapping[str, str] = field(default_factory=dict)
    for_: float = 0.0  # seconds the condition must hold before the alert fires
    severity: Severity = "warning"
    summary: str = ""  # an alerts.template template
    failures: int = 0  # > 0: fire after this many evaluations in a row hold (ignores for_)


def _rule(name: str, condition: str, severity: Severity, summary: str, for_: float = 0.0,
          failures: int = 0, match: Mapping[str, str] | None = None) -> RuleSpec:
    return RuleSpec(name, parse(condition), match or {}, for_, severity, summary, failures)


BUILTINS: tuple[RuleSpec, ...] = (
    # three failed probes in a row rather than a duration: targets have their own intervals
    _rule("TargetDown", "success == false", "critical", "{target} is down: {failure_reason}",
          failures=3),
    _rule("NodeLagging", "block_lag > 5", "warning",
          "{target} is {block_lag} blocks behind its reference", for_=120),
    _rule("NodeHeadStale", "head_age_seconds > 180", "critical",
          "{target}: the head block is {head_age_seconds}s old", for_=60),
    _rule("NodeSyncing", "syncing == true", "warning", "{target} is syncing", for_=300),
    _rule("CertExpiringSoon", "cert_expiry_days < 14", "warning",
          "{target}: the TLS certificate expires in {cert_expiry_days} days"),
    _rule("WebhookDeliveriesFailing", "delivery_failure_ratio > 0.5", "critical",
          "{delivery_failure_ratio} of webhook delivery attempts are failing", for_=300,
          match={"type": "service"}),
    _rule("WebhookQueueBacklog", "oldest_pending_age_seconds > 300", "warning",
          "the oldest pending webhook delivery waits for {oldest_pending_age_seconds}s "
          "({queue_depth} queued)", for_=300, match={"type": "service"}),
    # a deep reorg is an event: the alert holds for the hour after it, then resolves
    _rule("FollowerDeepReorg", "deep_reorgs_1h > 0", "critical",
          "chain {chain}: {deep_reorgs_1h} reorgs in the last hour went deeper than its "
          "confirmations; transfers told confirmed were checked again. Raise "
          "[service.chains.{chain}].confirmations", match={"type": "follower"}),
)
BUILTIN_NAMES = tuple(r.name for r in BUILTINS)


class RuleSource(Protocol):
    """What a configured rule offers (monitor.config.RuleConfig has this shape)."""

    @property
    def name(self) -> str: ...
    @property
    def condition(self) -> str: ...
    @property
    def match(self) -> Mapping[str, str]: ...
    @property
    def for_(self) -> float: ...
    @property
    def severity(self) -> Severity: ...
    @property
    def summary(self) -> str: ...


class RulesSource(Protocol):
    """What the `[alerts]` section offers (monitor.config.AlertsSection has this shape)."""

    @property
    def disable_builtin(self) -> Sequence[str]: ...
    @property
    def rules(self) -> Sequence[RuleSource]: ...


def from_config(rule: RuleSource) -> RuleSpec:
    # parse is cached, and the config loader already parsed this text once: it cannot fail
    return RuleSpec(rule.name, parse(rule.condition), dict(rule.match), rule.for_,
                    rule.severity, rule.summary)


def all_rules(section: RulesSource) -> list[RuleSpec]:
    """The built-ins not disabled, then the configured rules; a configured rule named like a
    built-in takes the built-in's place."""
    configured = {r.name: from_config(r) for r in section.rules}
    rules: list[RuleSpec] = []
    for builtin in BUILTINS:
        if builtin.name in configured:
            rules.append(configured.pop(builtin.name))
        elif builtin.name not in section.disable_builtin:
            rules.append(builtin)
    return rules + list(configured.values())

