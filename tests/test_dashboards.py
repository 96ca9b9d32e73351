"""The Grafana dashboards: their structure, the catalog as the only source of metric names,
the export with its provisioning YAML, the example Prometheus config and recording rules
(checked by the real promtool), and every panel query run on a real Prometheus scraping a
real monitor with its embedded webhook service, ganache nodes and documented EOS/XRPL nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
import tomllib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

import catalog.metrics as m
from dashboards.build import (
    UIDS,
    Query,
    all_dashboards,
    panels,
    queries,
    query_variables,
    substitute,
)
from dashboards.common import DATASOURCE_VAR, PROVISIONED_DATASOURCE_UID, WIDTH
from dashboards.export import (
    dashboards_provider_yaml,
    datasource_yaml,
    export,
    export_command,
)
from dashboards.promql import BUILTINS, label_values, metric_names, variable_names
from monitor.app import Monitor
from monitor.config import parse
from tests.support.chain_nodes import FakeNode, GanacheNode, json_answer
from tests.support.fake_telegram import FakeTelegram
from tests.support.net import free_port
from tests.support.node_samples import eos_info, xrpl_info
from tests.support.web import TlsServer

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "prometheus"
SERVICE_KEY = "k"
START_WAIT = 30.0  # Prometheus is ready in about a second; a loaded machine gets more


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:  # a missing component is a failure, never a skip: `make test` installs it
        pytest.fail("promtool not found: install the Debian package 'prometheus'")
    return path


def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        pytest.fail("prometheus not found: install the Debian package 'prometheus'")
    return path


@pytest.fixture(scope="module")
def boards() -> list[dict[str, Any]]:
    return all_dashboards()


# --- structure ------------------------------------------------------------------------------


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


# --- export ---------------------------------------------------------------------------------


def test_export_writes_dashboards_and_provisioning(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    url = 'http://prom.example:9090/sub path?a=b#c: "quoted"'
    written = export(tmp_path / "out", url, folder="yes")
    out = (tmp_path / "out").resolve()
    assert {p.relative_to(out).as_posix() for p in written} == {
        *(f"dashboards/{uid}.json" for uid in UIDS),
        "provisioning/dashboards/crypitor.yaml", "provisioning/datasources/crypitor.yaml"}
    assert [json.loads((out / "dashboards" / f"{b['uid']}.json").read_text())
            for b in all_dashboards(url)] == all_dashboards(url)
    assert not list(out.rglob("*.tmp"))

    provider = yaml.safe_load((out / "provisioning/dashboards/crypitor.yaml").read_text())
    assert provider["apiVersion"] == 1
    [p] = provider["providers"]
    assert p["type"] == "file" and p["folder"] == "yes" and p["name"] == "crypitor"
    assert p["options"]["path"] == str(out / "dashboards")
    assert p["disableDeletion"] is False and p["orgId"] == 1

    sources = yaml.safe_load((out / "provisioning/datasources/crypitor.yaml").read_text())
    assert sources["apiVersion"] == 1
    [ds] = sources["datasources"]
    assert ds == {"name": "Crypitor Prometheus", "uid": PROVISIONED_DATASOURCE_UID,
                  "type": "prometheus", "access": "proxy", "url": url, "isDefault": False,
                  "editable": True, "jsonData": {"timeInterval": "15s"}}

    assert export_command(str(tmp_path / "cmd")) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 6 and all(Path(p).exists() for p in printed)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert export_command(str(blocker)) == 1
    assert "cannot write" in capsys.readouterr().err


def test_provisioning_yaml_keeps_awkward_values_strings() -> None:
    # values YAML could read as another type, or that could end a scalar or open a structure
    for value in ("yes", "null", "~", "", "1e3", "0o17", "#c", "a: b", "- x", "[x]", "{x}",
                  "'q'", '"q"', "é 😀", "line\nbreak", " padded "):
        path = Path("/d") / value
        [provider] = yaml.safe_load(dashboards_provider_yaml(path, value))["providers"]
        assert (provider["folder"], provider["options"]["path"]) == (value, str(path))
        [source] = yaml.safe_load(datasource_yaml(value))["datasources"]
        assert source["url"] == value


# --- Prometheus config and recording rules --------------------------------------------------


def test_example_prometheus_config_and_rules_pass_promtool() -> None:
    for args in (["check", "config", str(DEPLOY / "prometheus.yml")],
                 ["check", "rules", str(DEPLOY / "recording_rules.yml")]):
        check = subprocess.run([promtool(), *args], capture_output=True, text=True,
                               timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
    config = (DEPLOY / "prometheus.yml").read_text()
    assert "127.0.0.1:9300" in config and "127.0.0.1:8080" in config
    rules = (DEPLOY / "recording_rules.yml").read_text()
    for name in ("probe_success", "crypitor_webhook_deliveries_total",
                 "crypitor_webhook_delivery_latency_seconds_bucket"):
        assert name in rules


def rules_test(rules: Path) -> dict[str, Any]:
    """A promtool unit test of the recording rules in `rules`."""
    def series(name: str, labels: str, values: str) -> dict[str, str]:
        return {"series": f"{name}{{{labels}}}", "values": values}

    def sample(name: str, labels: str, value: float) -> dict[str, Any]:
        return {"labels": f"{name}{{{labels}}}", "value": value}

    availability = "target:probe_success:avg_over_time_1h"
    success = "job:crypitor_webhook_delivery_success:ratio_rate5m"
    return {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            series("probe_success", 'job="m", target="a"', "1x59 0x59"),
            series("probe_success", 'job="m", target="b"', "1x119"),
            series("crypitor_webhook_deliveries_total", 'job="s", outcome="success"',
                   "0+180x10"),
            series("crypitor_webhook_deliveries_total", 'job="s", outcome="retry"', "0+60x10"),
        ],
        "promql_expr_test": [
            {"expr": availability, "eval_time": "120m", "exp_samples": [
                sample(availability, 'job="m", target="a"', 0),
                sample(availability, 'job="m", target="b"', 1)]},
            {"expr": success, "eval_time": "10m", "exp_samples": [
                sample(success, 'job="s"', 0.75)]},
        ],
    }]}


def test_recording_rules_compute_what_they_say(tmp_path: Path) -> None:
    spec = tmp_path / "rules_test.yml"
    spec.write_text(yaml.safe_dump(rules_test(DEPLOY / "recording_rules.yml"),
                                   sort_keys=False))
    check = subprocess.run([promtool(), "test", "rules", str(spec)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


# --- every query on a real Prometheus ------------------------------------------------------

# Panels that must show data with the targets and traffic of the live test below.
CORE = {
    ("crypitor-overview", "Targets up"), ("crypitor-overview", "Targets"),
    ("crypitor-overview", "Uptime 24 h"), ("crypitor-overview", "Firing alerts"),
    ("crypitor-overview", "Webhook delivery success (24 h)"),
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

    def start(self) -> None:
        log = (self._workdir / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [prometheus_binary(), f"--config.file={self.config}",
             f"--storage.tsdb.path={self._workdir / 'tsdb'}",
             f"--web.listen-address={self.url.removeprefix('http://')}",
             "--log.level=warn"],
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
min_peers = 0
max_head_age = "1h"
[[targets]]
name = "eth-main"
type = "ethereum"
url = "{eth_main}"
interval = "1s"
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
    monitor = Monitor(parse(tomllib.loads(text), tmp_path / "config.toml"),
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
