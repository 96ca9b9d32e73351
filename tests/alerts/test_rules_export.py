"""`crypitor rules export`: the built-in and configured rules as a Prometheus rule file that
the real promtool accepts, and whose expressions select, over the series our exporters
write, exactly the targets for which our own evaluator says the condition holds."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from alerts.builtin import RuleSpec, all_rules
from alerts.expr import parse
from alerts.model import matches
from alerts.promrules import PromRule, Skipped, export, prometheus_duration, translate
from monitor.config import Config
from monitor.config import parse as parse_config
from monitor.exporters import ProbeCollector
from monitor.runtime import TargetState
from probes.base import ProbeResult, Reason, Value
from service.metrics import new_metrics
from service.models import QueueStats
from tests.support.tools import promtool

CONFIG = """
[[targets]]
name = "eth-ok"
type = "ethereum"
url = "http://127.0.0.1:8545"
labels = { team = "core" }

[[targets]]
name = "eth-lag"
type = "ethereum"
url = "http://127.0.0.1:8546"
labels = { team = "core" }

[[targets]]
name = "eth-sync"
type = "ethereum"
url = "http://127.0.0.1:8547"

[[targets]]
name = "eth-partial"
type = "ethereum"
url = "http://127.0.0.1:8548"

[[targets]]
name = "btc"
type = "bitcoin"
url = "http://127.0.0.1:8332"

[[targets]]
name = "web"
type = "http"
url = "https://127.0.0.1:8443/"
labels = { team = "web" }

[[targets]]
name = "web-ok"
type = "http"
url = "https://127.0.0.1:8444/"

[[targets]]
name = "web-down"
type = "http"
url = "https://127.0.0.1:8445/"

[[targets]]
name = "db"
type = "tcp"
url = "tcp://127.0.0.1:5432"

[alerts]
disable_builtin = ["NodeSyncing"]

[[alerts.rules]]
name = "EthNodeLagging"
match = { type = "ethereum" }
condition = "not (block_lag <= 5 or syncing) and peers < 3"
for = "2m"
severity = "critical"
summary = "{target} is {block_lag} blocks behind ({team}, {alertname}/{severity})"

[[alerts.rules]]
name = "CertExpiringSoon"
condition = "cert_expiry_days < 7"
summary = "{target}'s certificate: {cert_expiry_days} days left"

[[alerts.rules]]
name = "WebErrors"
match = { team = "web" }
condition = "success == false or status_code >= 500"
severity = "info"
runbook_url = "https://runbooks.example.com/web"
summary = "web \\"{target}\\" ✓ {{literal}} {{{target}}} {status_code}\\nsecond line"

[[alerts.rules]]
name = "NotHealthy"
condition = "not (success and peers >= 3)"

[[alerts.rules]]
name = "NotOk"
condition = "status_code != 200"

[[alerts.rules]]
name = "HeadVsPeers"
condition = "head_block > peers and chain_id == 1"

[[alerts.rules]]
name = "Backlog"
match = { type = "service" }
condition = "queue_depth > 0 and not oldest_pending_age_seconds < 300"

[[alerts.rules]]
name = "Folded"
condition = "block_lag > 5 and 1 < 2 or false"

[[alerts.rules]]
name = "CertAndSync"
condition = "cert_expiry_days < 14 and not syncing"

[[alerts.rules]]
name = "ChainOne"
condition = "chain_id == 1 or not success"

[[alerts.rules]]
name = "Reason"
condition = 'failure_reason == "status"'

[[alerts.rules]]
name = "ServiceOrNode"
condition = "queue_depth > 0 or block_lag > 5"
"""

# what each target's probe said (success, failure reason, values)
RESULTS: dict[str, tuple[bool, Reason | None, dict[str, Value]]] = {
    "eth-ok": (True, None, {"head_block": 100, "block_lag": 1, "head_age_seconds": 5.0,
                            "peers": 10, "syncing": False, "chain_id": 1}),
    "eth-lag": (True, None, {"head_block": 90, "block_lag": 10, "head_age_seconds": 400.0,
                             "peers": 2, "syncing": False, "chain_id": 1}),
    "eth-sync": (False, Reason.SYNCING, {"head_block": 80, "block_lag": 10, "peers": 2,
                                         "syncing": True, "chain_id": 5}),
    "eth-partial": (True, None, {"block_lag": 9}),
    "btc": (True, None, {"head_block": 5, "block_lag": 7, "peers": 1, "syncing": False}),
    "web": (False, Reason.STATUS, {"status_code": 503, "cert_expiry_days": 3.0,
                                   "body_bytes": 10}),
    "web-ok": (True, None, {"status_code": 200, "cert_expiry_days": 10.0, "body_bytes": 2}),
    "web-down": (False, Reason.REFUSED, {}),
    "db": (True, None, {"connect_seconds": 0.01}),
}
SERVICE: dict[str, Value] = {"queue_depth": 4, "oldest_pending_age_seconds": 900.0}
EPOCH = datetime.fromtimestamp(0, UTC)  # promtool's clock starts at 0: expiry = days * 86400


def load_config(tmp_path: Path) -> tuple[Path, Config]:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    return path, parse_config(tomllib.loads(CONFIG), path)


def export_file(tmp_path: Path, config: Path) -> Path:
    out = tmp_path / "rules.yml"
    proc = subprocess.run([sys.executable, "-m", "monitor", "rules", "export", "-c",
                           str(config), "-o", str(out)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return out


def test_export_passes_promtool_check(tmp_path: Path) -> None:
    config, _ = load_config(tmp_path)
    out = export_file(tmp_path, config)
    check = subprocess.run([promtool(), "check", "rules", str(out)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 16 rules found" in check.stdout, check.stdout
    text = out.read_text()
    stdout = subprocess.run([sys.executable, "-m", "monitor", "rules", "export", "-c",
                             str(config)], capture_output=True, text=True, timeout=60)
    assert stdout.returncode == 0 and stdout.stdout == text
    assert "NodeSyncing" not in text  # disabled
    for name, why in (("Reason", "failure_reason is text"),
                      ("ServiceOrNode", "it mixes the webhook service's values with a target's")):
        assert f"\n# {name} is not exported: {why}" in text
    [group] = yaml.safe_load(text)["groups"]
    lagging = next(r for r in group["rules"] if r["alert"] == "NodeLagging")
    assert list(lagging.items())[:3] == [("alert", "NodeLagging"),
                                         ("expr", "crypitor_chain_block_lag > 5"), ("for", "2m")]
    assert "fires natively after" not in text  # TargetDown counts probes, as ours does
    assert "?" not in "".join(str(r["annotations"]) for r in group["rules"])
    down = next(r for r in group["rules"] if r["alert"] == "TargetDown")
    assert down["expr"] == "crypitor_probe_consecutive_failures >= 3" and "for" not in down
    assert down["annotations"]["runbook_url"] == "README.md#runbook-targetdown"
    assert any(r["alert"] == "WebhookDeliveriesFailing" for r in group["rules"])


def test_missing_output_directory_is_a_runtime_failure(tmp_path: Path) -> None:
    config, _ = load_config(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "monitor", "rules", "export", "-c",
                           str(config), "-o", str(tmp_path / "no" / "rules.yml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "cannot write" in proc.stderr and "Traceback" not in proc.stderr


def exported_series(config: Config) -> list[tuple[str, float]]:
    """The gauges our exporters write for RESULTS and SERVICE, as `name{labels}` strings."""
    states = [TargetState(t) for t in config.targets]
    for state in states:
        success, reason, values = RESULTS[state.name]
        for _ in range(3):  # TargetDown's three in a row
            state.record(ProbeResult(success, 0.1, EPOCH, values, reason))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProbeCollector(states))
    service = new_metrics()
    service.observe_stats(QueueStats(int(SERVICE["queue_depth"]),
                                     float(SERVICE["oldest_pending_age_seconds"]), 0))
    out: list[tuple[str, float]] = []
    for reg in (registry, service.registry):
        for family in reg.collect():
            if family.type != "gauge":
                continue
            for s in family.samples:
                labels = ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(s.labels.items()))
                out.append((f"{s.name}{{{labels}}}", float(s.value)))
    return out


def natively_firing(rule: RuleSpec, config: Config) -> list[str]:
    """The targets our own evaluator says the rule holds for ("" for the service)."""
    targets: list[tuple[str, Mapping[str, str], Mapping[str, Value]]] = [
        ("", {"target": "service", "type": "service"}, SERVICE)]
    for t in config.targets:
        success, reason, values = RESULTS[t.name]
        result = ProbeResult(success, 0.1, EPOCH, values, reason)
        targets.append((t.name, {**t.labels, "type": t.type, "target": t.name},
                        result.named_values()))
    return sorted(name for name, labels, values in targets
                  if matches(rule.match, labels) and rule.condition.evaluate(values) is True)


def test_exported_expressions_select_what_we_evaluate(tmp_path: Path) -> None:
    """promtool evaluates each exported expression over the series our exporters write;
    the targets it selects must be those for which our evaluator says the rule holds."""
    config_path, config = load_config(tmp_path)
    rules_file = export_file(tmp_path, config_path)
    series = [{"series": name, "values": " ".join([repr(value)] * 16)}
              for name, value in exported_series(config)]
    tests: list[dict[str, object]] = []
    for rule in all_rules(config.alerts):
        result = translate(rule)
        if isinstance(result, Skipped):
            continue
        samples = [{"labels": "{target=" + json.dumps(t) + "}" if t else "{}", "value": 1}
                   for t in natively_firing(rule, config)]
        tests.append({"expr": f"count by (target) ({result.expr})", "eval_time": "10m",
                      "exp_samples": samples})
    assert len(tests) == 16
    lagging = natively_firing(next(r for r in all_rules(config.alerts)
                                   if r.name == "EthNodeLagging"), config)
    assert lagging == ["eth-lag"]  # eth-sync is syncing, eth-partial has no peers value
    alerts = [
        {"alertname": "EthNodeLagging", "eval_time": "10m", "exp_alerts": [{
            "exp_labels": {"severity": "critical", "target": "eth-lag", "chain": "ethereum",
                           "team": "core"},
            "exp_annotations": {
                "summary": "eth-lag is 10 blocks behind (core, EthNodeLagging/critical)",
                "condition": "not (block_lag <= 5 or syncing) and peers < 3"}}]},
        {"alertname": "EthNodeLagging", "eval_time": "1m", "exp_alerts": []},
        {"alertname": "WebErrors", "eval_time": "10m", "exp_alerts": [{
            "exp_labels": {"severity": "info", "target": "web", "type": "http",
                           "team": "web"},
            "exp_annotations": {
                "summary": 'web "web" \u2713 {literal} {web} 503\nsecond line',
                "condition": "success == false or status_code >= 500",
                "runbook_url": "https://runbooks.example.com/web"}}]},
    ]
    unit = tmp_path / "unit.yml"
    unit.write_text(yaml.safe_dump({
        "rule_files": [rules_file.name], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": tests,
                   "alert_rule_test": alerts}],
    }, sort_keys=False))
    proc = subprocess.run([promtool(), "test", "rules", str(unit)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr + unit.read_text()


def test_the_deep_reorg_rule_fires_for_the_hour_after_one(tmp_path: Path) -> None:
    """FollowerDeepReorg holds natively while a deep reorg is less than an hour old; the
    exported rule says the same over the follower's counter."""
    config_path, _ = load_config(tmp_path)
    rules_file = export_file(tmp_path, config_path)
    summary = ("chain eth: {value} reorgs in the last hour went deeper than its "
               "confirmations; transfers told confirmed were checked again. Raise "
               "[service.chains.eth].confirmations")

    def firing(value: str) -> list[dict[str, object]]:
        return [{"exp_labels": {"severity": "critical", "chain": "eth"},
                 "exp_annotations": {"summary": summary.format(value=value),
                                     "condition": "deep_reorgs_1h > 0",
                                     "runbook_url": "README.md#runbook-followerdeepreorg"}}]

    unit = tmp_path / "unit.yml"
    unit.write_text(yaml.safe_dump({
        "rule_files": [rules_file.name], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": [
            # one deep reorg at minute 10, none before or after
            {"series": 'crypitor_follower_deep_reorgs_total{chain="eth"}',
             "values": "0x10 1x120"}],
            "alert_rule_test": [
                {"alertname": "FollowerDeepReorg", "eval_time": "9m", "exp_alerts": []},
                {"alertname": "FollowerDeepReorg", "eval_time": "30m", "exp_alerts": firing("1")},
                {"alertname": "FollowerDeepReorg", "eval_time": "75m", "exp_alerts": []}]}],
    }, sort_keys=False))
    proc = subprocess.run([promtool(), "test", "rules", str(unit)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr + unit.read_text()


TRANSLATIONS = [
    # (condition, match, PromQL)
    ("success == false", {}, "probe_success == 0"),
    ("syncing", {}, "crypitor_chain_syncing == 1"),
    ("not syncing", {}, "crypitor_chain_syncing != 1"),
    ("5 < block_lag", {}, "crypitor_chain_block_lag > 5"),
    ("not (block_lag > 5 or peers < 3)", {},
     "crypitor_chain_block_lag <= 5 and on(target) crypitor_chain_peers >= 3"),
    ("block_lag > 5 and (peers < 3 or syncing)", {},
     "crypitor_chain_block_lag > 5 and on(target) "
     "(crypitor_chain_peers < 3 or on(target) crypitor_chain_syncing == 1)"),
    ("head_block > peers", {}, "crypitor_chain_head_block > on(target) crypitor_chain_peers"),
    ("status_code >= 500", {"team": "web"}, '(probe_http_status_code{team="web"} != 0) >= 500'),
    ("cert_expiry_days < 14", {}, "((probe_ssl_earliest_cert_expiry - time()) / 86400) < 14"),
    ("success == false", {"type": "http", "target": "a"},
     'probe_success{target="a", type="http"} == 0'),
    ("block_lag > 5", {"type": "ethereum"},
     '(crypitor_chain_block_lag > 5) and on(target) probe_success{type="ethereum"}'),
    ("block_lag > 5 and true", {"chain": "eth"},
     '(crypitor_chain_block_lag > 5) and on(target) probe_success{chain="eth"}'),
    ("queue_depth > 10 or oldest_pending_age_seconds > 60", {"type": "service"},
     "crypitor_webhook_queue_depth > 10 or crypitor_webhook_oldest_pending_age_seconds > 60"),
]


@pytest.mark.parametrize(("condition", "match", "promql"), TRANSLATIONS,
                         ids=[t[0] for t in TRANSLATIONS])
def test_translation(condition: str, match: dict[str, str], promql: str) -> None:
    result = translate(RuleSpec("R", parse(condition), match))
    assert isinstance(result, PromRule), result
    assert result.expr == promql


SKIPS = [
    ('server_state != "full"', {}, "server_state is text"),
    ("block_lag > 5 or true", {}, "the condition is always true"),
    ("queue_depth > 1", {"team": "x"}, "the webhook service's series carry no target labels"),
    ("success == false", {"bad-key": "x"}, "match key 'bad-key' is not a Prometheus label"),
]


@pytest.mark.parametrize(("condition", "match", "reason"), SKIPS, ids=[s[0] for s in SKIPS])
def test_untranslatable_rules_say_why(condition: str, match: dict[str, str],
                                      reason: str) -> None:
    result = translate(RuleSpec("R", parse(condition), match))
    assert isinstance(result, Skipped) and result.reason.startswith(reason), result


def test_yaml_and_duration_formatting() -> None:
    # text that a hand-made YAML writer could let end a scalar, fold a line or change type
    awkward = 'a "b" \\ c\nd é 😀 #e: [f], yes'
    rule = RuleSpec("R", parse("block_lag > 5"), {"team": awkward}, summary=awkward)
    [exported] = yaml.safe_load(export([rule]))["groups"][0]["rules"]
    team = json.dumps(awkward, ensure_ascii=False)
    assert exported["expr"] == f"crypitor_chain_block_lag{{team={team}}} > 5"
    assert exported["annotations"]["summary"] == awkward
    assert [prometheus_duration(s) for s in (120, 90, 0.5, 3600, 86400 * 2, 61.5)] == \
        ["2m", "90s", "500ms", "1h", "2d", "61500ms"]
    empty = export([], "x.toml")
    assert yaml.safe_load(empty) == {"groups": [{"name": "crypitor", "rules": []}]}
    assert empty.startswith("# Prometheus alerting rules generated by `crypitor rules export` "
                            "from x.toml.\n")


SLO_CONFIG = """
[service]
enabled = false

[[slos]]
name = "core"
match = { team = "core" }
objective = 99.0
window = "30d"

[[slos]]
name = "deliveries"
kind = "webhook_delivery"
within = "1m"
objective = 99.0
"""


def probes(target: str, team: str, success: str, failure: str) -> list[dict[str, str]]:
    labels = f'target="{target}", type="http", team="{team}"'
    return [{"series": f'crypitor_probes_total{{{labels}, result="success"}}', "values": success},
            {"series": f'crypitor_probes_total{{{labels}, result="failure"}}', "values": failure}]


def firing(*alerts: tuple[str, str, str]) -> list[dict[str, object]]:
    """ALERTS samples of SLOBurnRate firing for (slo, window, severity)."""
    return [{"labels": "ALERTS{" + ", ".join(f'{k}="{v}"' for k, v in (
        ("alertname", "SLOBurnRate"), ("alertstate", "firing"), ("severity", severity),
        ("slo", slo), ("window", window))) + "}", "value": 1}
        for slo, window, severity in alerts]


def test_slo_rules_fire_as_the_workbook_says(tmp_path: Path) -> None:
    """The exported SLO rules over synthetic series: an outage pages on both pairs and opens
    a ticket; a healthy SLO and an unmatched failing target alert nothing; a burst that
    ended 50 minutes ago no longer pages (its short windows are clean) but still tickets;
    late webhook deliveries count against the delivery SLO."""
    path = tmp_path / "config.toml"
    path.write_text(SLO_CONFIG)
    rules_file = export_file(tmp_path, path)
    check = subprocess.run([promtool(), "check", "rules", str(rules_file)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    query = 'ALERTS{alertname="SLOBurnRate", alertstate="firing"}'
    unmatched = probes("web", "web", "0+0x180", "0+100x180")  # down, but not in the SLO
    summary = ("SLO core: the error budget burns 20x as fast as it may over {w} (and 20x over "
               "the shorter window); -19 of it remains")
    tests = [
        {"interval": "1m", "input_series": probes("a", "core", "0+80x180", "0+20x180")
         + unmatched,  # 20 % of probes fail: 20x the budget of 1 %
         "promql_expr_test": [
             {"expr": query, "eval_time": "70m", "exp_samples": firing(
                 ("core", "1h", "critical"), ("core", "6h", "critical"),
                 ("core", "3d", "warning"))},
             {"expr": 'slo:burn_rate:ratio{slo="core", window="1h"}', "eval_time": "70m",
              "exp_samples": [{"labels": 'slo:burn_rate:ratio{slo="core", window="1h"}',
                               "value": 20}]}],
         "alert_rule_test": [{"alertname": "SLOBurnRate", "eval_time": "70m", "exp_alerts": [
             {"exp_labels": {"severity": severity, "slo": "core", "window": window},
              "exp_annotations": {
                  "summary": summary.format(w=window),
                  "condition": "burn_rate > burn_threshold and short_burn_rate > "
                               "burn_threshold",
                  "runbook_url": "README.md#runbook-sloburnrate"}}
             for window, severity in (("1h", "critical"), ("6h", "critical"),
                                      ("3d", "warning"))]}]},
        {"interval": "1m", "input_series": probes("a", "core", "0+995x180", "0+5x180")
         + unmatched,  # 0.5 %: half the budget's pace
         "promql_expr_test": [{"expr": query, "eval_time": "170m", "exp_samples": []}]},
        {"interval": "1m",
         # every probe fails for 10 minutes, then none: 1/6 of the hour failed
         "input_series": probes("a", "core", "0+0x10 0+100x110", "0+100x10 1000+0x110"),
         "promql_expr_test": [
             {"expr": query, "eval_time": "8m", "exp_samples": firing(
                 ("core", "1h", "critical"), ("core", "6h", "critical"),
                 ("core", "3d", "warning"))},
             {"expr": query, "eval_time": "60m", "exp_samples": firing(
                 ("core", "3d", "warning"))}]},
        {"interval": "1m", "input_series": [
            # 100 deliveries a minute end; 20 of them arrive later than 1m: 20x the budget
            {"series": 'crypitor_webhook_delivery_latency_seconds_bucket{le="60.0"}',
             "values": "0+80x90"},
            {"series": 'crypitor_webhook_deliveries_total{outcome="success"}',
             "values": "0+95x90"},
            {"series": 'crypitor_webhook_deliveries_total{outcome="dead"}', "values": "0+5x90"},
            {"series": 'crypitor_webhook_deliveries_total{outcome="failed"}',
             "values": "0+0x90"},
            {"series": 'crypitor_webhook_deliveries_total{outcome="retry"}',
             "values": "0+500x90"}],  # retries are attempts, not ended deliveries
         "promql_expr_test": [{"expr": query, "eval_time": "70m", "exp_samples": firing(
             ("deliveries", "1h", "critical"), ("deliveries", "6h", "critical"),
             ("deliveries", "3d", "warning"))}]},
    ]
    unit = tmp_path / "unit.yml"
    unit.write_text(yaml.safe_dump({"rule_files": [rules_file.name],
                                    "evaluation_interval": "1m", "tests": tests},
                                   sort_keys=False))
    proc = subprocess.run([promtool(), "test", "rules", str(unit)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
