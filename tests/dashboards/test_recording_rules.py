"""The example Prometheus config and the recording rules the dashboards read
(deploy/prometheus), checked and unit-tested by the real promtool."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.tools import promtool

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "prometheus"



def test_example_prometheus_config_and_rules_pass_promtool() -> None:
    for args in (["check", "config", str(DEPLOY / "prometheus.yml")],
                 ["check", "rules", str(DEPLOY / "recording_rules.yml")]):
        check = subprocess.run([promtool(), *args], capture_output=True, text=True,
                               timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
    config = (DEPLOY / "prometheus.yml").read_text()
    assert "127.0.0.1:9300" in config and "127.0.0.1:8080" in config
    rules = (DEPLOY / "recording_rules.yml").read_text()
    for name in ("probe_success", "crypitor_webhook_deliveries_total",
                 "crypitor_webhook_delivery_latency_seconds_bucket"):
        assert name in rules


def rules_test(rules: Path) -> dict[str, Any]:
    """A promtool unit test of the recording rules in `rules`."""
    def series(name: str, labels: str, values: str) -> dict[str, str]:
        return {"series": f"{name}{{{labels}}}", "values": values}

    def sample(name: str, labels: str, value: float) -> dict[str, Any]:
        return {"labels": f"{name}{{{labels}}}", "value": value}

    availability = "target:probe_success:avg_over_time_1h"
    success = "job:crypitor_webhook_delivery_success:ratio_rate5m"
    return {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            series("probe_success", 'job="m", target="a"', "1x59 0x59"),
            series("probe_success", 'job="m", target="b"', "1x119"),
            series("crypitor_webhook_deliveries_total", 'job="s", outcome="success"',
                   "0+180x10"),
            series("crypitor_webhook_deliveries_total", 'job="s", outcome="retry"', "0+60x10"),
        ],
        "promql_expr_test": [
            {"expr": availability, "eval_time": "120m", "exp_samples": [
                sample(availability, 'job="m", target="a"', 0),
                sample(availability, 'job="m", target="b"', 1)]},
            {"expr": success, "eval_time": "10m", "exp_samples": [
                sample(success, 'job="s"', 0.75)]},
        ],
    }]}


def test_recording_rules_compute_what_they_say(tmp_path: Path) -> None:
    spec = tmp_path / "rules_test.yml"
    spec.write_text(yaml.safe_dump(rules_test(DEPLOY / "recording_rules.yml"),
                                   sort_keys=False))
    check = subprocess.run([promtool(), "test", "rules", str(spec)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
