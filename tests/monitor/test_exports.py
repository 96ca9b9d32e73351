"""`crypitor run` with `[grafana]` and `[gcp]`: dashboards are pushed at start and probe
metrics reach Cloud Monitoring, while probing goes on; neither failing stops the monitor."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest

from monitor.app import Runtime
from monitor.config import parse
from tests.support.fake_gcp import FakeGcp
from tests.support.fake_grafana import FakeGrafana
from tests.support.net import free_port

pytestmark = pytest.mark.timeout(60)


def monitor(tmp_path: Path, grafana_url: str, gcp_address: str) -> Runtime:
    listen = f"127.0.0.1:{free_port()}"
    text = f"""
[monitor]
listen = "{listen}"
data_dir = "{tmp_path / 'data'}"
[service]
enabled = false
[[targets]]
name = "self"
type = "http"
url = "http://{listen}/healthz"
interval = "500ms"
[grafana]
url = "{grafana_url}"
token = "env:TEST_GRAFANA_TOKEN"
[gcp]
project_id = "crypitor-test"
interval = "10s"
api_endpoint = "{gcp_address}"
insecure = true
"""
    return Runtime(parse(tomllib.loads(text), tmp_path / "config.toml"),
                   {"TEST_GRAFANA_TOKEN": "glsa_test_token"})


async def test_run_pushes_dashboards_and_exports_to_gcp(
        tmp_path: Path, fake_grafana: FakeGrafana, fake_gcp: FakeGcp) -> None:
    fake_grafana.token = "glsa_test_token"
    fake_grafana.roles["glsa_test_token"] = "Admin"
    m = monitor(tmp_path, fake_grafana.url, fake_gcp.address)
    await m.start()
    try:
        async with asyncio.timeout(40):
            while len(fake_grafana.dashboards) < 4 or not fake_gcp.requests:
                await asyncio.sleep(0.2)
        assert {uid for uid in fake_grafana.dashboards} >= {"crypitor-overview"}
        types = {ts.metric.type for r in fake_gcp.requests for ts in r.time_series}
        assert "custom.googleapis.com/crypitor/probe_success" in types
        assert m.states[0].successes > 0  # probing went on
    finally:
        await m.stop()


async def test_unreachable_grafana_and_failing_gcp_do_not_stop_monitoring(
        tmp_path: Path, fake_gcp: FakeGcp) -> None:
    import grpc

    fake_gcp.fail(grpc.StatusCode.UNAVAILABLE, times=100)
    m = monitor(tmp_path, f"http://127.0.0.1:{free_port()}", fake_gcp.address)
    await m.start()
    try:
        await asyncio.sleep(2.0)
        assert m.states[0].successes >= 2 and m.states[0].up
    finally:
        await m.stop()
