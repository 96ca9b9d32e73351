"""The Prometheus retention the dashboards need, set everywhere deploy/ runs a Prometheus:
the longest window a panel reads (the Overview's 30 d uptime) plus the Overview's own time
range must fit in it (Prometheus' default 15 d does not). Compose sets the flag; systemd
ships a drop-in for Debian's prometheus, which `systemd-analyze verify` reads with the
packaged unit and the real Prometheus runs with; Kubernetes ships a Prometheus Operator
resource whose PodMonitor selects both components."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from dashboards.build import all_dashboards
from tests.dashboards.test_queries_on_prometheus import Prometheus
from tests.deploy.test_compose import services
from tests.deploy.test_kubernetes import deployment, documents
from tests.support.promql import queries
from tests.support.tools import ROOT, systemd_analyze

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
DROP_IN = ROOT / "deploy" / "systemd" / "prometheus.service.d" / "retention.conf"
DEBIAN_UNIT = Path("/lib/systemd/system/prometheus.service")
DEFAULT_RETENTION = 15 * 86400


def seconds(text: str) -> int:
    """A Prometheus duration ("35d", "1h30m") in seconds."""
    parts = re.findall(r"(\d+)([smhdwy])", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(int(n) * UNITS[u] for n, u in parts)


def needed() -> int:
    """The longest range any panel reads, plus the longest default time range of a board
    (a panel at the left edge of the graph reads that much further back)."""
    boards = all_dashboards()
    ranges = [seconds(r) for b in boards for q in queries(b)
              for r in re.findall(r"\[(\d+[smhdwy])(?::[^\]]*)?\]", q.expr)]
    spans = [seconds(b["time"]["from"].removeprefix("now-")) for b in boards]
    return max(ranges) + max(spans)


def flag(args: list[str]) -> int:
    (value,) = [a.split("=", 1)[1] for a in args
                if a.startswith("--storage.tsdb.retention.time=")]
    return seconds(value)


def test_the_dashboards_need_more_than_the_default_retention() -> None:
    assert needed() == 31 * 86400 > DEFAULT_RETENTION  # 30 d uptime, seen over 24 h


def test_compose_keeps_what_the_dashboards_need() -> None:
    assert flag(services()["prometheus"]["command"]) >= needed()


def test_kubernetes_prometheus_keeps_it_and_scrapes_both_components() -> None:
    prom, monitor = documents("prometheus-operator.yaml")
    assert (prom["apiVersion"], prom["kind"]) == ("monitoring.coreos.com/v1", "Prometheus")
    assert seconds(prom["spec"]["retention"]) >= needed()
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1",
                                                        "PodMonitor")
    wanted = prom["spec"]["podMonitorSelector"]["matchLabels"]
    assert wanted.items() <= monitor["metadata"]["labels"].items()
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    for component in ("monitor", "service"):
        pod: dict[str, Any] = deployment(component)["spec"]["template"]
        assert selector.items() <= pod["metadata"]["labels"].items(), component
        (container,) = pod["spec"]["containers"]
        assert endpoint["port"] in {p["name"] for p in container["ports"]}, component


def drop_in_exec() -> list[str]:
    lines = [line.strip() for line in DROP_IN.read_text().splitlines()
             if line.strip().startswith("ExecStart=")]
    assert lines[0] == "ExecStart=", "the packaged ExecStart must be reset first"
    (command,) = lines[1:]
    return command.removeprefix("ExecStart=").split()


def test_systemd_drop_in_verifies_with_the_packaged_unit(tmp_path: Path) -> None:
    assert DEBIAN_UNIT.exists(), "Debian's prometheus package is not installed"
    shutil.copy(DEBIAN_UNIT, tmp_path / "prometheus.service")
    (tmp_path / "prometheus.service.d").mkdir()
    shutil.copy(DROP_IN, tmp_path / "prometheus.service.d" / DROP_IN.name)
    check = subprocess.run([systemd_analyze(), "verify", "--man=no",
                            str(tmp_path / "prometheus.service")],
                           capture_output=True, text=True, timeout=60,
                           env={"SYSTEMD_UNIT_PATH": f"{tmp_path}:", "PATH": "/usr/bin:/bin"})
    assert check.returncode == 0 and not check.stderr.strip(), check.stdout + check.stderr
    command = drop_in_exec()
    assert command[0] == "/usr/bin/prometheus" and command[-1] == "$ARGS"
    assert flag(command) >= needed()


@pytest.mark.timeout(60)
async def test_the_real_prometheus_runs_with_the_drop_in_retention(tmp_path: Path) -> None:
    command = drop_in_exec()
    prom = Prometheus(tmp_path, {})
    args = [a for a in command[1:] if a != "$ARGS"]  # $ARGS: /etc/default/prometheus' own
    prom.start(args)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            await prom.wait_ready(http)
            async with http.get(f"{prom.url}/api/v1/status/runtimeinfo") as resp:
                info = (await resp.json())["data"]
            async with http.get(f"{prom.url}/api/v1/status/flags") as resp:
                flags = (await resp.json())["data"]
    finally:
        prom.stop()
    assert seconds(flags["storage.tsdb.retention.time"]) == flag(command)
    assert info["storageRetention"].startswith(flags["storage.tsdb.retention.time"])


def test_prometheus_yaml_examples_say_where_retention_is_set() -> None:
    # retention is a flag, not a prometheus.yml key: the example config points at it
    text = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    assert "--storage.tsdb.retention.time=35d" in text
    yaml.safe_load(text)
