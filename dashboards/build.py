"""The dashboards as Grafana JSON models, and every PromQL expression they run.

`all_dashboards()` is what `crypitor dashboards export` writes and `dashboards push` sends;
`queries()` and `substitute()` let a test run each expression on a real Prometheus.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dashboards import nodes, overview, probes, webhooks
from dashboards.promql import label_values
from dashboards.promql import substitute as _substitute

DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"
UIDS = (overview.UID, nodes.UID, webhooks.UID, probes.UID)


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a dashboard. For a template variable's `label_values(...)`
    query, `panel_title` is `variable <name>` and `expr` is the series selector whose label
    values the variable lists."""

    dashboard_uid: str
    panel_title: str
    expr: str


def all_dashboards(prometheus_url: str = DEFAULT_PROMETHEUS_URL) -> list[dict[str, Any]]:
    """The four dashboards (overview, blockchain nodes, webhook service, probes and
    alerting) as JSON-serialisable dicts. `prometheus_url` is only used for links to
    Prometheus' own pages; panels query through the dashboard's `datasource` variable."""
    return [module.build(prometheus_url) for module in (overview, nodes, webhooks, probes)]


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of `dashboard`, including those inside collapsed rows; rows excluded."""
    for panel in dashboard.get("panels") or []:
        if panel.get("type") == "row":
            yield from panel.get("panels") or []
        else:
            yield panel


def queries(dashboard: Mapping[str, Any]) -> list[Query]:
    """Every PromQL expression of `dashboard`: its query variables' series selectors first
    (in dependency order, as Grafana resolves them), then each panel's targets."""
    uid = str(dashboard["uid"])
    found: list[Query] = []
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        text = var.get("query")
        if isinstance(text, Mapping):
            text = text.get("query", "")
        parsed = label_values(str(text))
        if parsed is None:
            raise ValueError(f"{uid}: variable {var.get('name')}: not a label_values() query:"
                             f" {text!r}")
        selector, _label = parsed
        if selector:
            found.append(Query(uid, f"variable {var['name']}", selector))
    for panel in panels(dashboard):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if expr:
                found.append(Query(uid, str(panel.get("title", "")), str(expr)))
    return found


def query_variables(dashboard: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The query variables of `dashboard` as (name, series selector, label), in order."""
    out: list[tuple[str, str, str]] = []
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") == "query":
            parsed = label_values(str(var.get("query", "")))
            if parsed is not None:
                out.append((str(var["name"]), parsed[0], parsed[1]))
    return out


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """`expr` with its template variables and Grafana's `$__rate_interval`, `$__interval`
    and `$__range` replaced (see dashboards.promql.substitute)."""
    return _substitute(expr, variables)
