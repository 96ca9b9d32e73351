"""The deploy kit's generated files, written from the code that makes them, so a test can
tell a committed copy that fell behind: the alerting rules of the compose stack
(`crypitor rules export`) and its Grafana dashboards and provisioning (`crypitor dashboards
export`, with the paths and the Prometheus URL of the containers).

`python -m tests.deploy.generated` (or `make deploy-files`) rewrites them."""

from __future__ import annotations

import json
from pathlib import Path

from alerts.promrules import export as export_rules
from dashboards.build import all_dashboards
from dashboards.export import dashboards_provider_yaml, datasource_yaml
from monitor.alerting_setup import linked_rules
from tests.deploy.configs import checked

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_CONFIG = "deploy/compose/config.toml"
PROMETHEUS_URL = "http://prometheus:9090"       # the compose service, as Grafana reaches it
GRAFANA_DASHBOARDS = Path("/etc/grafana/dashboards/crypitor")   # mounted from deploy/grafana


def expected_files() -> dict[str, str]:
    """Path relative to the repository → the text it must hold."""
    config = checked((ROOT / COMPOSE_CONFIG).read_text(), COMPOSE_CONFIG)
    files = {"deploy/prometheus/alert_rules.yml": export_rules(
        linked_rules(config.alerts, config.grafana), COMPOSE_CONFIG, config.slos)}
    for board in all_dashboards(PROMETHEUS_URL):
        files[f"deploy/grafana/dashboards/{board['uid']}.json"] = (
            json.dumps(board, indent=2, ensure_ascii=False) + "\n")
    files["deploy/grafana/provisioning/dashboards/crypitor.yaml"] = (
        dashboards_provider_yaml(GRAFANA_DASHBOARDS))
    files["deploy/grafana/provisioning/datasources/crypitor.yaml"] = (
        datasource_yaml(PROMETHEUS_URL))
    return files


def main() -> None:
    for rel, text in expected_files().items():
        path = ROOT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(rel)


if __name__ == "__main__":
    main()
