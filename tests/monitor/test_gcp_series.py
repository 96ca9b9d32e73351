"""Google Cloud Monitoring export, the pure conversion: samples become the documented custom
metrics (label keys, kinds, units, resource), non-finite values and duplicates are skipped,
and batches hold at most 200 series."""

from __future__ import annotations

from datetime import timedelta

import pytest
from google.cloud import monitoring_v3
from prometheus_client import CollectorRegistry, Counter, Gauge

from monitor.exporters.gcp.series import (
    EXPORTED,
    batches,
    label_key,
    metric_labels,
    to_time_series,
)
from tests.monitor.gcp_helpers import T0, by_type, probe_registry
from tests.support.fake_gcp import CUMULATIVE, GAUGE


def test_label_keys_follow_cloud_monitoring_rules() -> None:
    assert label_key("target") == "target"
    assert label_key("Team") == "team"
    assert label_key("_hidden") == "l__hidden"
    assert label_key("9lives") == "l_9lives"
    assert label_key("a" * 150) == "a" * 100
    labels = metric_labels({"target": "x", "team": "", "Region": "eu", "region": "us",
                            "note": "v" * 2000})
    # "" dropped; Region and region collide: the first in sorted order wins
    assert labels == {"target": "x", "region": "eu", "note": "v" * 1024}


def test_to_time_series_kinds_values_times_and_selection() -> None:
    now = T0 + timedelta(minutes=5)
    series = to_time_series(probe_registry().collect(), "p1", now, start=T0, node_id="mon-1")
    got = by_type(series)
    assert set(got) == {"probe_success", "probe_duration_seconds", "crypitor_chain_head_block",
                        "crypitor_chain_block_lag", "crypitor_chain_head_age_seconds",
                        "crypitor_chain_peers", "crypitor_probes_total"}
    assert set(got) <= EXPORTED  # no process, scheduler or per-process series
    up = {ts.metric.labels["target"]: ts for ts in got["probe_success"]}
    assert dict(up["eth-main"].metric.labels) == {"target": "eth-main", "type": "ethereum",
                                                  "team": "infra"}
    assert dict(up["api"].metric.labels) == {"target": "api", "type": "http"}  # "" dropped
    assert up["eth-main"].points[0].value.double_value == 1.0
    assert up["api"].points[0].value.double_value == 0.0
    gauge = got["crypitor_chain_head_block"][0]
    assert gauge.metric_kind == GAUGE
    assert gauge.points[0].value.double_value == 19_000_000
    assert gauge.points[0].interval.end_time == now
    assert "start_time" not in gauge.points[0].interval
    assert got["probe_duration_seconds"][0].unit == "s"
    counter = got["crypitor_probes_total"][0]
    assert counter.metric_kind == CUMULATIVE
    assert counter.points[0].value.double_value == 7
    assert counter.points[0].interval.start_time == T0
    assert counter.points[0].interval.end_time == now
    assert counter.resource.type == "generic_node"
    assert dict(counter.resource.labels) == {"project_id": "p1", "location": "global",
                                             "namespace": "crypitor", "node_id": "mon-1"}


def test_non_finite_values_and_sanitising_duplicates_are_skipped() -> None:
    reg = CollectorRegistry(auto_describe=False)
    g = Gauge("probe_success", "h", ["target", "Zone", "zone"], registry=reg)
    g.labels("a", "eu", "").set(float("nan"))
    g.labels("b", "eu", "").set(1)
    g.labels("b", "eu", "us").set(1)  # becomes the same series as the one before
    g.labels("c", "", "").set(float("inf"))
    series = to_time_series(reg.collect(), "p", T0, node_id="n")
    assert [dict(ts.metric.labels) for ts in series] == [{"target": "b", "zone": "eu"}]


def test_counters_start_before_they_end() -> None:
    reg = CollectorRegistry(auto_describe=False)
    Counter("crypitor_probes", "h", registry=reg).inc()
    (ts,) = to_time_series(reg.collect(), "p", T0, node_id="n")  # no start given
    assert ts.points[0].interval.start_time < ts.points[0].interval.end_time


def test_batches_hold_at_most_200() -> None:
    items = [monitoring_v3.TimeSeries() for _ in range(450)]
    assert [len(b) for b in batches(items)] == [200, 200, 50]
    assert list(batches([])) == []
    with pytest.raises(ValueError):
        list(batches(items, 201))
