"""The dashboards as Grafana JSON models: `all_dashboards()` is what `crypitor dashboards
export` writes and `dashboards push` sends. The tests read every PromQL expression out of them
(`tests/support/promql.py`) and run each on a real Prometheus.
"""

from __future__ import annotations

from typing import Any

from dashboards import nodes, overview, probes, webhooks

DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"
UIDS = (overview.UID, nodes.UID, webhooks.UID, probes.UID)


def all_dashboards(prometheus_url: str = DEFAULT_PROMETHEUS_URL) -> list[dict[str, Any]]:
    """The four dashboards (overview, blockchain nodes, webhook service, probes and
    alerting) as JSON-serialisable dicts. `prometheus_url` is only used for links to
    Prometheus' own pages; panels query through the dashboard's `datasource` variable."""
    return [module.build(prometheus_url) for module in (overview, nodes, webhooks, probes)]
