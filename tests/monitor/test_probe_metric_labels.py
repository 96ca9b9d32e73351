"""Every per-target series the monitor exports carries the labels its catalog entry names
(plus `target` and the target's own labels), so siblings agree: the last-run timestamp has
`type` like `probe_success` and `crypitor_probes_total`, and a dashboard may join on it."""

from __future__ import annotations

import tomllib
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import catalog.metrics as m
from monitor.config import parse
from monitor.exporters import new_registry
from monitor.runtime import TargetState
from probes.base import Outcome, Reason, SystemClock

CONFIG = """
[[targets]]
name = "site"
type = "http"
url = "https://example.com/"
labels = { team = "web" }
[[targets]]
name = "port"
type = "tcp"
url = "tcp://127.0.0.1:1"
labels = { team = "web" }
"""


def test_every_per_target_series_has_its_catalog_labels(tmp_path: Path) -> None:
    config = parse(tomllib.loads(CONFIG), tmp_path / "config.toml")
    states = [TargetState(t) for t in config.targets]
    for state in states:
        out = Outcome(SystemClock())
        out.values["status_code"] = 200
        out.fail(Reason.REFUSED, "nobody there")
        state.record(out.result())
    registry, _ = new_registry(states)
    defs = {d.name: d for d in m.ALL if d.per_target}
    seen: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            d = defs.get(sample.name) or defs.get(sample.name.removesuffix("_total"))
            if d is None or sample.name.endswith("_created"):
                continue
            seen[d.name] = set(sample.labels)
            assert set(sample.labels) == {"target", *d.labels, "team"}, (sample.name,
                                                                          sample.labels)
    last_run = m.PROBE_LAST_RUN.name
    assert seen[last_run] == seen[m.PROBE_SUCCESS.name] == {"target", "type", "team"}
    assert "type" in m.PROBE_LAST_RUN.labels
