"""The rule set: built-in rules, configured rules replacing or adding to them, disabling,
`match` against a target's labels, and the built-ins' summaries rendered."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from alerts.builtin import BUILTIN_NAMES, BUILTINS, RuleSpec, all_rules, from_config
from alerts.expr import parse
from alerts.model import matches
from alerts.template import check, render
from monitor.config import AlertsSection, RuleConfig
from monitor.config import parse as parse_config


def alerts_of(text: str) -> AlertsSection:
    return parse_config(tomllib.loads(text), Path("/tmp/config.toml")).alerts


def test_builtins_as_specified() -> None:
    by_name = {r.name: r for r in BUILTINS}
    assert list(by_name) == ["TargetDown", "NodeLagging", "NodeHeadStale", "NodeSyncing",
                             "CertExpiringSoon", "WebhookDeliveriesFailing",
                             "WebhookQueueBacklog", "FollowerDeepReorg", "SLOBurnRate"]
    assert tuple(by_name) == BUILTIN_NAMES
    shape = {r.name: (r.condition.text, r.for_, r.failures, r.severity, dict(r.match))
             for r in BUILTINS}
    assert shape == {
        "TargetDown": ("success == false", 0.0, 3, "critical", {}),
        "NodeLagging": ("block_lag > 5", 120, 0, "warning", {}),
        "NodeHeadStale": ("head_age_seconds > 180", 60, 0, "critical", {}),
        "NodeSyncing": ("syncing == true", 300, 0, "warning", {}),
        "CertExpiringSoon": ("cert_expiry_days < 14", 0.0, 0, "warning", {}),
        "WebhookDeliveriesFailing": ("delivery_failure_ratio > 0.5", 300, 0, "critical",
                                     {"type": "service"}),
        "WebhookQueueBacklog": ("oldest_pending_age_seconds > 300", 300, 0, "warning",
                                {"type": "service"}),
        "FollowerDeepReorg": ("deep_reorgs_1h > 0", 0.0, 0, "critical", {"type": "follower"}),
        # severity and window come from the SLO's synthetic target (one per burn-rate pair)
        "SLOBurnRate": ("burn_rate > burn_threshold and short_burn_rate > burn_threshold",
                        0.0, 0, "critical", {"type": "slo"}),
    }
    for rule in BUILTINS:
        assert rule.summary and check(rule.summary) == []


def test_builtin_summaries_render() -> None:
    by_name = {r.name: r for r in BUILTINS}
    values: dict[str, object] = {"target": "eth-1", "failure_reason": "timeout",
                                 "block_lag": 12, "cert_expiry_days": 3.5,
                                 "oldest_pending_age_seconds": 412.25, "queue_depth": 7,
                                 "chain": "ethereum", "deep_reorgs_1h": 1}
    assert render(by_name["TargetDown"].summary, values) == "eth-1 is down: timeout"
    assert render(by_name["NodeLagging"].summary, values) == \
        "eth-1 is 12 blocks behind its reference"
    assert render(by_name["CertExpiringSoon"].summary, values) == \
        "eth-1: the TLS certificate expires in 3.5 days"
    assert render(by_name["WebhookQueueBacklog"].summary, values) == \
        "the oldest pending webhook delivery waits for 412.25s (7 queued)"
    assert render(by_name["FollowerDeepReorg"].summary, values) == (
        "chain ethereum: 1 reorgs in the last hour went deeper than its confirmations; "
        "transfers told confirmed were checked again. Raise "
        "[service.chains.ethereum].confirmations")


def test_all_rules_disables_replaces_and_appends() -> None:
    section = alerts_of("""
[alerts]
disable_builtin = ["CertExpiringSoon", "NodeSyncing"]

[[alerts.rules]]
name = "EthNodeLagging"
match = { type = "ethereum" }
condition = "block_lag > 5"
for = "2m"
severity = "critical"
summary = "{target} is {block_lag} blocks behind"

[[alerts.rules]]
name = "NodeLagging"
condition = "block_lag > 50"

[[alerts.rules]]
name = "NodeSyncing"
condition = "syncing and peers < 3"
severity = "info"
""")
    rules = all_rules(section)
    assert [r.name for r in rules] == ["TargetDown", "NodeLagging", "NodeHeadStale",
                                       "NodeSyncing", "WebhookDeliveriesFailing",
                                       "WebhookQueueBacklog", "FollowerDeepReorg",
                                       "SLOBurnRate", "EthNodeLagging"]
    by_name = {r.name: r for r in rules}
    # a configured rule takes a built-in's place, even a disabled one's
    assert by_name["NodeLagging"].condition.text == "block_lag > 50"
    assert by_name["NodeLagging"].for_ == 0.0 and by_name["NodeLagging"].failures == 0
    assert by_name["NodeSyncing"].severity == "info"
    assert "CertExpiringSoon" not in by_name
    eth = by_name["EthNodeLagging"]
    assert eth == RuleSpec("EthNodeLagging", parse("block_lag > 5"), {"type": "ethereum"},
                           120.0, "critical", "{target} is {block_lag} blocks behind")
    assert eth.condition is parse("block_lag > 5")  # parsed once, at config load


def test_no_alerts_section_gives_the_builtins() -> None:
    assert all_rules(alerts_of("")) == list(BUILTINS)


def test_from_config_copies_every_field() -> None:
    rc = RuleConfig("R", "peers < 3", {"team": "core"}, 30.0, "info", "{target}: {peers}")
    spec = from_config(rc)
    assert (spec.name, spec.condition.text, dict(spec.match), spec.for_, spec.severity,
            spec.summary, spec.failures) == ("R", "peers < 3", {"team": "core"}, 30.0, "info",
                                             "{target}: {peers}", 0)


MATCHES = [
    ({}, {"target": "a", "type": "http"}, True),
    ({"type": "ethereum"}, {"target": "e", "type": "ethereum", "team": "core"}, True),
    ({"type": "ethereum"}, {"target": "b", "type": "bitcoin"}, False),
    ({"type": "ethereum", "team": "core"}, {"target": "e", "type": "ethereum"}, False),
    ({"target": "e"}, {"target": "e", "type": "ethereum"}, True),
    ({"team": ""}, {"target": "e", "type": "ethereum"}, False),  # absent is not empty
    ({"type": "service"}, {"target": "service", "type": "service"}, True),
]


@pytest.mark.parametrize(("match", "labels", "expected"), MATCHES)
def test_matches(match: dict[str, str], labels: dict[str, str], expected: bool) -> None:
    assert matches(match, labels) is expected
