"""The rules alerting evaluates: the built-in ones every install gets, and configured ones
from `[[alerts.rules]]` (which may replace a built-in by using its name).

A rule applies to a target when every key of its `match` equals the target's label of that
name; `type` and `target` (the target's name) count as labels. The webhook service shows up
as a synthetic target of type `service` whose values are `delivery_failure_ratio`,
`oldest_pending_age_seconds` and `queue_depth`; each chain it follows as one of type
`follower` (named `follower-<chain>`, label `chain`) whose value is `deep_reorgs_1h`. Each
service level objective shows up as one synthetic target of type `slo` per burn-rate window
pair of `BURN_RATES` (labels `slo`, `window`, `severity`), whose values are `burn_rate` (over
the long window), `short_burn_rate`, `burn_threshold` and `error_budget_remaining`;
`SLOBurnRate` fires on them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
    runbook_url: str = ""  # carried into every alert's annotations, and exported
    dashboard_url: str = ""


@dataclass(frozen=True)
class BurnRate:
    """One multi-window burn-rate alert of the SRE workbook (chapter 5, table 5-8): it fires
    while the error budget burns faster than `factor` times the sustainable rate over both
    the `long` and the `short` window."""

    long: str
    short: str
    factor: float
    severity: Severity


# page at 14.4x over 1h and 5m (2 % of a 30 d budget in an hour), page at 6x over 6h and 30m
# (5 % in 6 h), ticket at 1x over 3d and 6h (10 % in 3 d)
BURN_RATES: tuple[BurnRate, ...] = (
    BurnRate("1h", "5m", 14.4, "critical"),
    BurnRate("6h", "30m", 6.0, "critical"),
    BurnRate("3d", "6h", 1.0, "warning"),
)
# every window a burn rate is computed over (the crypitor_slo_burn_rate `window` label)
BURN_WINDOWS: dict[str, float] = {"5m": 300.0, "30m": 1800.0, "1h": 3600.0, "6h": 21600.0,
                                  "3d": 259200.0}


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
    # the burn-rate pairs: a synthetic target per SLO and pair (see the module's docstring)
    _rule("SLOBurnRate", "burn_rate > burn_threshold and short_burn_rate > burn_threshold",
          "critical", "SLO {slo}: the error budget burns {burn_rate}x as fast as it may over "
          "{window} (and {short_burn_rate}x over the shorter window); "
          "{error_budget_remaining} of it remains", match={"type": "slo"}),
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
    @property
    def runbook_url(self) -> str: ...
    @property
    def dashboard_url(self) -> str: ...


class RulesSource(Protocol):
    """What the `[alerts]` section offers (monitor.config.AlertsSection has this shape)."""

    @property
    def disable_builtin(self) -> Sequence[str]: ...
    @property
    def rules(self) -> Sequence[RuleSource]: ...


def from_config(rule: RuleSource) -> RuleSpec:
    # parse is cached, and the config loader already parsed this text once: it cannot fail
    return RuleSpec(rule.name, parse(rule.condition), dict(rule.match), rule.for_,
                    rule.severity, rule.summary, runbook_url=rule.runbook_url,
                    dashboard_url=rule.dashboard_url)


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


def runbook_anchor(name: str) -> str:
    """The README's anchor of a built-in rule's runbook (its heading "Runbook: NAME")."""
    return "#runbook-" + name.lower()


def with_links(rules: Sequence[RuleSpec], runbook_base: str,
               dashboard: Callable[[RuleSpec], str]) -> list[RuleSpec]:
    """`rules` with the default links filled in where a rule has none: a built-in's runbook
    is its README anchor under `runbook_base`; `dashboard` gives the dashboard's URL ("" for
    none)."""
    out: list[RuleSpec] = []
    for rule in rules:
        runbook = rule.runbook_url
        if not runbook and rule.name in BUILTIN_NAMES and runbook_base:
            runbook = runbook_base + runbook_anchor(rule.name)
        out.append(replace(rule, runbook_url=runbook,
                           dashboard_url=rule.dashboard_url or dashboard(rule)))
    return out

