"""Turning our registry's samples into Cloud Monitoring TimeSeries: metric names, label
keys and values the API accepts, metric kinds, units and the monitored resource. Pure
functions; `monitor.exporters.gcp.exporter` collects, sends and retries.

* **What**: the catalog's per-target metrics (`probe_*`, `crypitor_probe_*`,
  `crypitor_chain_*`, `crypitor_probes_total`, ...). Process, scheduler and build metrics stay
  in Prometheus. Gauges become GAUGE points at the collection time; counters become
  CUMULATIVE points counted from the exporter's start (the probe counters start at zero with
  the process). Histograms are not exported: no per-target metric is one, and a DISTRIBUTION
  would need its buckets re-encoded for no reader. Every value is DOUBLE, as in Prometheus;
  NaN and infinities are skipped because the API refuses them.
* **Resource**: `generic_node` {project_id, location "global", namespace "crypitor",
  node_id = host name}. It is one of the types Cloud Monitoring accepts for user-defined
  metrics; unlike `global` (project_id only) it names the writer, so two monitors in one
  project write two series instead of fighting over one, which the API would reject as
  points out of order or too frequent.
* **Labels**: the sample's Prometheus labels. Keys must match `[a-z][a-z0-9_]*` and be at
  most 100 characters: they are lower-cased, other characters become `_`, a key not starting
  with a letter gets `l_` in front, and the result is cut to 100; when two keys become one,
  the first in sorted order wins. Values are cut to 1024 characters. Empty values are
  dropped: Cloud Monitoring reads an absent label as "", so this changes nothing but size.
"""

from __future__ import annotations

import math
import re
import socket
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta

from google.api import metric_pb2, monitored_resource_pb2
from google.cloud import monitoring_v3
from prometheus_client.core import Metric

import catalog.metrics as m

METRIC_PREFIX = "custom.googleapis.com/crypitor/"
MAX_SERIES_PER_CALL = 200
MAX_KEY, MAX_VALUE = 100, 1024
RESOURCE_TYPE = "generic_node"

EXPORTED: frozenset[str] = frozenset(d.name for d in m.ALL if d.per_target)
_UNITS = {"s": "s", "bytes": "By"}  # catalog unit → UCUM; "unix" and "" stay unit-less
_KINDS = {"gauge": metric_pb2.MetricDescriptor.MetricKind.GAUGE,
          "counter": metric_pb2.MetricDescriptor.MetricKind.CUMULATIVE}
_BAD_KEY_CHARS = re.compile(r"[^a-z0-9_]")


def label_key(name: str) -> str:
    """A Prometheus label name as a Cloud Monitoring label key: `[a-z][a-z0-9_]*`, ≤ 100."""
    key = _BAD_KEY_CHARS.sub("_", name.lower())
    if not ("a" <= key[:1] <= "z"):
        key = "l_" + key
    return key[:MAX_KEY]


def metric_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """The sample's labels as metric labels: keys sanitised, values cut, empty ones dropped."""
    out: dict[str, str] = {}
    for name in sorted(labels):
        value = labels[name]
        if value == "":
            continue
        out.setdefault(label_key(name), value[:MAX_VALUE])
    return out


def node_resource(project_id: str, node_id: str) -> monitored_resource_pb2.MonitoredResource:
    return monitored_resource_pb2.MonitoredResource(type=RESOURCE_TYPE, labels={
        "project_id": project_id, "location": "global", "namespace": "crypitor",
        "node_id": node_id[:MAX_VALUE]})


def _unit(name: str) -> str:
    try:
        return _UNITS.get(m.by_name(name).unit, "")
    except KeyError:
        return ""


def to_time_series(families: Iterable[Metric], project_id: str, now: datetime, *,
                   start: datetime | None = None, node_id: str = "",
                   names: Collection[str] = EXPORTED) -> list[monitoring_v3.TimeSeries]:
    """One TimeSeries per exported sample of `families`, each with one point at `now`.

    `start` is when the counters began counting (the exporter's start); it is kept at least
    a millisecond before `now`, as a CUMULATIVE interval may not be empty. A series that
    appears twice once its labels are sanitised is written once (the API refuses repeats
    within a request).
    """
    node_id = node_id or socket.gethostname()
    resource = node_resource(project_id, node_id)
    begin = min(start or now, now - timedelta(milliseconds=1))
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    out: list[monitoring_v3.TimeSeries] = []
    for family in families:
        kind = _KINDS.get(family.type)
        if kind is None:
            continue
        for sample in family.samples:
            value = float(sample.value)
            if sample.name not in names or not math.isfinite(value):
                continue
            labels = metric_labels(sample.labels)
            key = (sample.name, tuple(sorted(labels.items())))
            if key in seen:
                continue
            seen.add(key)
            if kind == metric_pb2.MetricDescriptor.MetricKind.GAUGE:
                interval = monitoring_v3.TimeInterval(end_time=now)
            else:
                interval = monitoring_v3.TimeInterval(start_time=begin, end_time=now)
            out.append(monitoring_v3.TimeSeries(
                metric=metric_pb2.Metric(type=METRIC_PREFIX + sample.name, labels=labels),
                resource=resource,
                metric_kind=kind,
                value_type=metric_pb2.MetricDescriptor.ValueType.DOUBLE,
                points=[monitoring_v3.Point(interval=interval,
                                            value=monitoring_v3.TypedValue(double_value=value))],
                unit=_unit(sample.name)))
    return out


def batches(series: Sequence[monitoring_v3.TimeSeries],
            size: int = MAX_SERIES_PER_CALL) -> Iterator[Sequence[monitoring_v3.TimeSeries]]:
    """`series` in consecutive slices of at most `size` (the API's limit per request)."""
    if not 0 < size <= MAX_SERIES_PER_CALL:
        raise ValueError(f"batch size must be 1..{MAX_SERIES_PER_CALL}, not {size}")
    for i in range(0, len(series), size):
        yield series[i:i + size]
