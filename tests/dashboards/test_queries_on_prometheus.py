"""Every panel query of every dashboard run on a real Prometheus scraping a real monitor with
its embedded webhook service, ganache nodes and documented EOS/XRPL nodes."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import tomllib
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from dashboards.build import all_dashboards
from monitor.app import Runtime
from monitor.config import parse
from tests.support.chain_nodes import FakeNode, GanacheNode, json_answer
from tests.support.fake_telegram import FakeTelegram
from tests.support.net import free_port
from tests.support.node_samples import eos_info, xrpl_info
from tests.support.promql import queries, query_variables, substitute
from tests.support.tools import prometheus
from tests.support.web import TlsServer

SERVICE_KEY = "k"
START_WAIT = 30.0  # Prometheus is ready in about a second; a loaded machine gets more



# Panels that must show data with the targets and traffic of the live test below.
CORE = {
    ("crypitor-overview", "Targets up"), ("crypitor-overview", "Targets"),
    ("crypitor-overview", "Uptime 24 h"), ("crypitor-overview", "Firing alerts"),
    ("crypitor-overview", "Webhook delivery success (24 h)"),
    ("crypitor-overview", "Delivered within 1 min (24 h)"),
    ("crypitor-overview", "Targets up by team"), ("crypitor-overview", "Uptime by team"),
    ("crypitor-overview", "Targets up by chain"), ("crypitor-overview", "Uptime by chain"),
    ("crypitor-webhooks", "Delivered within 1 min"),
    ("crypitor-nodes", "Head block"), ("crypitor-nodes", "Nodes"),
    ("crypitor-nodes", "Lag against reference"), ("crypitor-nodes", "Peers"),
    ("crypitor-nodes", "EOS irreversible lag"), ("crypitor-nodes", "XRPL server state"),
    ("crypitor-webhooks", "Deliveries by outcome"), ("crypitor-webhooks", "Events accepted"),
    ("crypitor-webhooks", "Delivery latency"), ("crypitor-webhooks", "Queue depth"),
    ("crypitor-webhooks", "Canary end-to-end delivery"),
    ("crypitor-probes", "Probe duration"), ("crypitor-probes", "HTTP probe duration by phase"),
    ("crypitor-probes", "Scheduler lag"), ("crypitor-probes", "Alerts firing"),
    ("crypitor-probes", "Probe failures by reason"),
    ("crypitor-probes", "TLS certificate expires in"),
    ("crypitor-probes", "HTTP status and body size"),
    ("crypitor-probes", "Notifications by outcome"),
}
# The SLO panels read crypitor_slo_* gauges that only an `[[slos]]` config makes; this config
# has none, so they may be empty here (tests/dashboards/test_manager_panels.py feeds them).
# What Prometheus must have seen before the dashboards are judged: both jobs up with a few
# scrapes each, the down target's alert firing and its notification sent.
READY = ("count(up == 1) == 2", "min(count_over_time(up[1m])) >= 6",
         "sum(crypitor_alerts_firing) > 0", "sum(crypitor_notifications_total) > 0")
GRAFANA_BUILTINS = {"__rate_interval": "15s", "__interval": "2s", "__range": "5m"}


class Prometheus:
    """A real Prometheus process on a free port with its own TSDB under `workdir`."""

    def __init__(self, workdir: Path, scrape: Mapping[str, str]) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self._workdir = workdir
        jobs = [{"job_name": job, "static_configs": [{"targets": [addr]}]}
                for job, addr in scrape.items()]
        self.config = workdir / "prometheus.yml"
        self.config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "scrape_configs": jobs}, sort_keys=False))
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, extra: Sequence[str] = ()) -> None:
        """Starts the process; `extra`: more flags, as a deploy file gives them."""
        log = (self._workdir / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [prometheus(), f"--config.file={self.config}",
             f"--storage.tsdb.path={self._workdir / 'tsdb'}",
             f"--web.listen-address={self.url.removeprefix('http://')}",
             "--log.level=warn", *extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    async def wait_ready(self, http: aiohttp.ClientSession) -> None:
        assert self._process is not None
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                pytest.fail(f"prometheus exited with {self._process.returncode}: "
                            f"{self.log()}")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{self.url}/-/ready") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
        pytest.fail(f"prometheus not ready within {START_WAIT:g}s: {self.log()}")

    def log(self) -> str:
        return (self._workdir / "prometheus.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    async def query(self, http: aiohttp.ClientSession, expr: str) -> dict[str, Any]:
        """The decoded answer of an instant query (also when Prometheus refused it)."""
        async with http.post(f"{self.url}/api/v1/query", data={"query": expr}) as resp:
            answer: dict[str, Any] = await resp.json()
            return answer

    async def value(self, http: aiohttp.ClientSession, expr: str) -> float | None:
        answer = await self.query(http, expr)
        result = answer.get("data", {}).get("result") or []
        return float(result[0]["value"][1]) if result else None


@contextlib.contextmanager
def running(prom: Prometheus) -> Iterator[Prometheus]:
    prom.start()
    try:
        yield prom
    finally:
        prom.stop()


def live_config(tmp_path: Path, listen: str, service: str, sink: str, tls: TlsServer,
                eth_main: str, eth_ref: str, eos: str, xrpl: str, telegram: str) -> str:
    return f"""
[monitor]
listen = "{listen}"
data_dir = "{tmp_path / 'data'}"
api_keys = ["monitor-key"]
[service]
enabled = true
listen = "{service}"
api_keys = ["{SERVICE_KEY}"]
allow_private_targets = true
retry_schedule = ["1s", "1s"]
[[targets]]
name = "site"
type = "http"
url = "{sink}/health"
interval = "1s"
labels = {{ team = "web" }}
[[targets]]
name = "secure"
type = "http"
url = "{tls.url}/ok"
interval = "1s"
tls_ca_file = "{tls.ca_file}"
[[targets]]
name = "eth-ref"
type = "ethereum"
url = "{eth_ref}"
interval = "1s"
labels = {{ team = "nodes", chain = "ethereum" }}
min_peers = 0
max_head_age = "1h"
[[targets]]
name = "eth-main"
type = "ethereum"
url = "{eth_main}"
interval = "1s"
labels = {{ team = "nodes", chain = "ethereum" }}
min_peers = 0
max_head_age = "1h"
max_lag_blocks = 100000
reference = "eth-ref"
[[targets]]
name = "eos-node"
type = "eos"
url = "{eos}"
interval = "1s"
max_head_age = "1h"
[[targets]]
name = "xrpl-node"
type = "xrpl"
url = "{xrpl}"
interval = "1s"
[[targets]]
name = "canary"
type = "webhook_canary"
url = "http://{service}"
interval = "1s"
timeout = "1s"
[[targets]]
name = "nowhere"
type = "tcp"
url = "tcp://127.0.0.1:{free_port()}"
interval = "1s"
[[alerts.receivers]]
name = "oncall"
bot_token = "env:TEST_BOT_TOKEN"
chat_id = "-1001234567890"
api_url = "{telegram}"
[alerts.route]
receiver = "oncall"
group_wait = "0s"
group_interval = "1s"
"""


async def make_traffic(http: aiohttp.ClientSession, service: str, sink: FakeNode) -> None:
    """Two endpoints (one answering 200, one 500: retries, then dead) and a few events."""
    auth = {"Authorization": f"Bearer {SERVICE_KEY}"}
    for path in ("/hook", "/broken"):
        async with http.post(f"http://{service}/v1/endpoints", headers=auth,
                             json={"url": f"{sink.url}{path}"}) as resp:
            assert resp.status == 201, await resp.text()
    for i in range(5):
        async with http.post(f"http://{service}/v1/events", headers=auth,
                             json={"type": "test.event", "data": {"n": i}}) as resp:
            assert resp.status == 202, await resp.text()
    async with asyncio.timeout(15):
        while sum(r.path == "/hook" for r in sink.requests) < 5:
            await asyncio.sleep(0.05)


async def resolve_variables(prom: Prometheus, http: aiohttp.ClientSession,
                            board: Mapping[str, Any]) -> dict[str, str]:
    """Each query variable's values, as Grafana would fill them in when every value is
    selected without an allValue: `(v1|v2|...)`."""
    values = dict(GRAFANA_BUILTINS)
    for name, selector, label in query_variables(board):
        answer = await prom.query(http, substitute(selector, values))
        assert answer["status"] == "success", (board["uid"], name, answer)
        found = sorted({s["metric"][label] for s in answer["data"]["result"]
                        if s["metric"].get(label)})
        assert found, f"{board['uid']}: variable {name} has no values ({selector})"
        values[name] = "(" + "|".join(found) + ")"
    return values


@pytest.mark.timeout(60)
async def test_every_panel_query_runs_on_a_real_prometheus(
        tmp_path: Path, ganache_pair: tuple[GanacheNode, GanacheNode],
        fake_nodes: Callable[[], Awaitable[FakeNode]], tls_server: TlsServer,
        fake_telegram: FakeTelegram) -> None:
    started = time.monotonic()
    main, reference = ganache_pair
    # fresh heads; one block each keeps the pair's difference, which other tests rely on
    await main.mine(1)
    await reference.mine(1)
    eos, xrpl, sink = await fake_nodes(), await fake_nodes(), await fake_nodes()
    eos.answer("/v1/chain/get_info", json_answer(eos_info(datetime.now(UTC))))
    xrpl.answer("/", json_answer(xrpl_info()))
    sink.answer("/health", json_answer({"status": "ok"}))
    sink.answer("/hook", json_answer({}))
    sink.answer("/broken", json_answer({"error": "down"}, status=500))
    listen, service = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    text = live_config(tmp_path, listen, service, sink.url, tls_server, main.url,
                       reference.url, eos.url, xrpl.url, fake_telegram.url)
    monitor = Runtime(parse(tomllib.loads(text), tmp_path / "config.toml"),
                      env={"TEST_BOT_TOKEN": fake_telegram.token})
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    prom = Prometheus(workdir, {"crypitor-monitor": listen, "crypitor-service": service})
    await monitor.start()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            with running(prom):
                await prom.wait_ready(http)
                await make_traffic(http, service, sink)
                async with asyncio.timeout(30):
                    for expr in READY:
                        while await prom.value(http, expr) is None:
                            await asyncio.sleep(0.25)
                ready = time.monotonic()
                failures, empty, ran = await run_all(prom, http)
                queried = time.monotonic()
    finally:
        await monitor.stop()
    print(f"\nprometheus test: setup+scrapes {ready - started:.1f}s, {ran} queries in "
          f"{queried - ready:.1f}s")
    assert not failures, "\n".join(failures)
    assert not empty, "core panels without data:\n" + "\n".join(empty)


async def run_all(prom: Prometheus, http: aiohttp.ClientSession,
                  ) -> tuple[list[str], list[str], int]:
    """Runs every query of every dashboard twice: with the variables' real values and with
    "All" (`.*`). Returns the failures, the core panels' empty answers and the count."""
    failures: list[str] = []
    empty: list[str] = []
    ran = 0
    covered: set[tuple[str, str]] = set()
    for board in all_dashboards():
        real = await resolve_variables(prom, http, board)
        every = {**real, **{name: ".*" for name, _, _ in query_variables(board)}}
        for q in queries(board):
            for values in (real, every):
                expr = substitute(q.expr, values)
                answer = await prom.query(http, expr)
                ran += 1
                where = f"{q.dashboard_uid} / {q.panel_title}: {expr}"
                if answer.get("status") != "success":
                    failures.append(f"{where}: {answer.get('error', answer)}")
                    continue
                key = (q.dashboard_uid, q.panel_title)
                if key in CORE:
                    covered.add(key)
                    data = answer["data"]
                    if data["resultType"] in ("vector", "matrix") and not data["result"]:
                        empty.append(where)
    assert covered == CORE, f"CORE names panels that do not exist: {CORE - covered}"
    return failures, empty, ran
