"""The Grafana dashboards' structure: stable uids, panels that each have a unit, a place and
the datasource variable, the catalog as the only source of the metric names they read, and
the PromQL helpers (`queries`, `substitute`, `metric_names`, `label_values`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

import catalog.metrics as m
from dashboards.build import UIDS, all_dashboards
from dashboards.common import DATASOURCE_VAR, PROVISIONED_DATASOURCE_UID, WIDTH
from tests.support.promql import (
    BUILTINS,
    Query,
    label_values,
    metric_names,
    panels,
    queries,
    query_variables,
    substitute,
    variable_names,
)


@pytest.fixture(scope="module")
def boards() -> list[dict[str, Any]]:
    return all_dashboards()


def test_four_dashboards_with_stable_uids_and_the_crypitor_tag(
        boards: list[dict[str, Any]]) -> None:
    assert [b["uid"] for b in boards] == list(UIDS) == [
        "crypitor-overview", "crypitor-nodes", "crypitor-webhooks", "crypitor-probes"]
    for board in boards:
        assert "crypitor" in board["tags"]
        assert board["title"].startswith("Crypitor")
        assert json.loads(json.dumps(board)) == board  # plain JSON data
    assert all_dashboards() == boards  # deterministic: a re-export changes nothing


def test_every_panel_has_a_unit_a_place_and_the_datasource_variable(
        boards: list[dict[str, Any]]) -> None:
    for board in boards:
        variables = board["templating"]["list"]
        ds = [v for v in variables if v["name"] == DATASOURCE_VAR]
        assert len(ds) == 1 and ds[0]["type"] == "datasource"
        assert ds[0]["query"] == "prometheus"
        assert ds[0]["current"]["value"] == PROVISIONED_DATASOURCE_UID
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{board['uid']}: duplicate panel ids"
        cells: dict[tuple[int, int], str] = {}
        for panel in board["panels"]:
            pos, title = panel["gridPos"], panel["title"]
            where = f"{board['uid']} / {title}"
            assert pos["w"] > 0 and pos["h"] > 0 and pos["x"] + pos["w"] <= WIDTH, where
            for x in range(pos["x"], pos["x"] + pos["w"]):  # no two panels overlap
                for y in range(pos["y"], pos["y"] + pos["h"]):
                    assert (x, y) not in cells, f"{where} overlaps {cells[(x, y)]}"
                    cells[(x, y)] = title
            if panel["type"] == "row":
                assert pos["h"] == 1 and pos["w"] == WIDTH, where
                continue
            assert panel["fieldConfig"]["defaults"].get("unit"), f"{where}: no unit"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel["targets"], f"{where}: no query"
            refs = [t["refId"] for t in panel["targets"]]
            assert len(refs) == len(set(refs)) and all(refs), where
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", where


def _catalog_name(name: str) -> str | None:
    """The catalog metric a series name belongs to: a histogram's `_bucket`, `_sum` and
    `_count` series belong to it; counters are named with `_total` in the catalog."""
    kinds = {d.name: d.kind for d in m.ALL}
    if name in kinds and kinds[name] is not m.MetricKind.HISTOGRAM:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and kinds.get(base) is m.MetricKind.HISTOGRAM:
            return base
    return None


def test_every_metric_a_dashboard_reads_is_in_the_catalog(
        boards: list[dict[str, Any]]) -> None:
    used: set[str] = set()
    for board in boards:
        for q in queries(board):
            names = metric_names(q.expr)
            assert names, f"{q}: reads no metric"
            for name in names:
                assert _catalog_name(name) is not None, \
                    f"{q.dashboard_uid} / {q.panel_title}: {name} is not in catalog.metrics"
                used.add(name)
    # the catalog's histograms are read through their buckets, never by their bare name
    assert f"{m.WEBHOOK_LATENCY.name}_bucket" in used and m.WEBHOOK_LATENCY.name not in used
    assert {"probe_success", "crypitor_webhook_deliveries_total",
            "probe_http_duration_seconds", "crypitor_alerts_firing",
            "crypitor_notifications_total", "crypitor_scheduler_lag_seconds_bucket",
            "crypitor_chain_head_block", "crypitor_webhook_events_received_total"} <= used


def test_every_template_variable_used_is_defined(boards: list[dict[str, Any]]) -> None:
    for board in boards:
        defined = {v["name"] for v in board["templating"]["list"]}
        for q in queries(board):
            unknown = variable_names(q.expr) - defined - set(BUILTINS)
            assert not unknown, f"{q}: undefined variables {unknown}"


def test_queries_list_variables_then_every_panel_target(boards: list[dict[str, Any]]) -> None:
    nodes = boards[1]
    found = queries(nodes)
    assert found[0] == Query("crypitor-nodes", "variable chain", "crypitor_chain_head_block")
    assert found[1] == Query("crypitor-nodes", "variable target",
                             'crypitor_chain_head_block{chain=~"$chain"}')
    targets = sum(len(p["targets"]) for p in panels(nodes))
    assert len(found) == 2 + targets
    assert query_variables(nodes) == [
        ("chain", "crypitor_chain_head_block", "chain"),
        ("target", 'crypitor_chain_head_block{chain=~"$chain"}', "target")]
    # panels inside a collapsed row count too
    folded = {"uid": "x", "panels": [{"type": "row", "panels": [
        {"title": "inner", "targets": [{"expr": "up"}]}]}]}
    assert queries(folded) == [Query("x", "inner", "up")]


def test_substitute_fills_every_variable_form() -> None:
    expr = ('rate(x{a=~"$a", b="${b}", c=~"${c:regex}"}[$__rate_interval])'
            " + y[$__range] offset $__interval")
    out = substitute(expr, {"a": "(p|q)", "b": "v", "c": ".*", "__rate_interval": "15s"})
    assert out == 'rate(x{a=~"(p|q)", b="v", c=~".*"}[15s]) + y[1h] offset 15s'
    with pytest.raises(KeyError, match=r"\$nope"):
        substitute("x{a=\"$nope\"}", {})


def test_metric_names_and_label_values_parsing() -> None:
    assert metric_names(
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="sum(b)"}[5m])))'
        " / on (target) group_left (chain) max without (le) (c) or vector(1e3)"
        " and d offset 5m") == {"a_bucket", "c", "d"}
    assert metric_names("sum(x) by (job) > bool 0") == {"x"}
    assert label_values("label_values(up{job=~\"$j\"}, instance)") == \
        ('up{job=~"$j"}', "instance")
    assert label_values("label_values(job)") == ("", "job")
    assert label_values("query_result(up)") is None
