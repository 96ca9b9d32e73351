"""The monitor assembled: real local targets probed on schedule, /metrics checked by a real
promtool, the targets API and status page, and the API's auth and error shapes."""

from __future__ import annotations

import asyncio
import subprocess
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from monitor.app import Runtime
from monitor.config import Config, parse
from tests.support.chain_nodes import FakeNode, GanacheNode, json_answer
from tests.support.net import free_port
from tests.support.node_samples import eos_info, xrpl_info
from tests.support.tools import promtool
from tests.support.web import serve


@pytest.fixture
async def local_site() -> AsyncIterator[str]:
    async def ok(_r: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "height": 42})

    async def broken(_r: web.Request) -> web.Response:
        return web.Response(status=503, text="down for maintenance")

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/broken", broken)
    async with serve(app) as base:
        yield base.removeprefix("http://")


def monitor_config(tmp_path: Path, site: str, listen: str) -> Config:
    closed = free_port()
    text = f"""
[monitor]
listen = "{listen}"
data_dir = "{tmp_path / 'data'}"
[service]
enabled = false
[[targets]]
name = "site-ok"
type = "http"
url = "http://{site}/ok"
interval = "1s"
labels = {{ team = "web", chain = "none" }}
json = ["height >= 40"]
[[targets]]
name = "site-broken"
type = "http"
url = "http://{site}/broken"
interval = "1s"
labels = {{ team = "web" }}
[[targets]]
name = "site-port"
type = "tcp"
url = "tcp://{site}"
interval = "1s"
[[targets]]
name = "nothing-there"
type = "tcp"
url = "tcp://127.0.0.1:{closed}"
interval = "1s"
"""
    return parse(tomllib.loads(text), tmp_path / "config.toml")


async def wait_all_probed(monitor: Runtime) -> None:
    async with asyncio.timeout(20):
        while any(s.last is None for s in monitor.states):
            await asyncio.sleep(0.1)


async def test_metrics_pass_promtool_and_carry_probe_values(tmp_path: Path,
                                                             local_site: str) -> None:
    listen = f"127.0.0.1:{free_port()}"
    monitor = Runtime(monitor_config(tmp_path, local_site, listen), env={})
    await monitor.start()
    try:
        await wait_all_probed(monitor)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{listen}/metrics") as resp:
                assert resp.status == 200
                text = await resp.text()
            async with http.get(f"http://{listen}/metrics",
                                headers={"Accept": "application/openmetrics-text"}) as resp:
                assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
                assert (await resp.text()).endswith("# EOF\n")
    finally:
        await monitor.stop()
    check = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert 'probe_success{chain="none",target="site-ok",team="web",type="http"} 1.0' in text
    assert 'probe_success{chain="",target="site-broken",team="web",type="http"} 0.0' in text
    assert 'probe_http_status_code{chain="",target="site-broken",team="web"} 503.0' in text
    assert 'crypitor_probe_failures_total{chain="",reason="status",target="site-broken"' in text
    assert 'crypitor_probe_failures_total{chain="",reason="refused",target="nothing-there"' \
        in text
    assert 'probe_http_duration_seconds{chain="none",phase="connect",target="site-ok"' in text
    assert "crypitor_scheduler_lag_seconds_bucket" in text
    assert "process_cpu_seconds_total" in text
    assert 'crypitor_targets{type="tcp"} 2.0' in text


async def test_a_monitor_without_targets_serves_its_metrics(tmp_path: Path) -> None:
    """No targets yet (a fresh install, or a reload that removed them all): /metrics is 200
    and valid, not a 500 from label names never worked out."""
    listen = f"127.0.0.1:{free_port()}"
    text = (f'[monitor]\nlisten = "{listen}"\ndata_dir = "{tmp_path / "data"}"\n'
            "[service]\nenabled = false\n")
    monitor = Runtime(parse(tomllib.loads(text), tmp_path / "config.toml"), env={})
    await monitor.start()
    try:
        async with aiohttp.ClientSession() as http, http.get(f"http://{listen}/metrics") as resp:
            assert resp.status == 200
            metrics = await resp.text()
    finally:
        await monitor.stop()
    check = subprocess.run([promtool(), "check", "metrics"], input=metrics,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "crypitor_scheduler_lag_seconds_bucket" in metrics
    assert "probe_success{" not in metrics


async def test_targets_api_status_page_and_errors(tmp_path: Path, local_site: str) -> None:
    listen = f"127.0.0.1:{free_port()}"
    monitor = Runtime(monitor_config(tmp_path, local_site, listen), env={})
    await monitor.start()
    try:
        await wait_all_probed(monitor)
        await monitor.history.flush()
        base = f"http://{listen}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/v1/targets") as resp:
                targets = {t["name"]: t for t in await resp.json()}
            async with http.get(f"{base}/api/v1/targets/nope") as resp:
                assert resp.status == 404
                assert await resp.json() == {"error": "no target named 'nope'",
                                             "field": "name"}
            async with http.get(f"{base}/no/such/page") as resp:
                assert resp.status == 404
                assert (await resp.json())["error"]
            async with http.post(f"{base}/api/v1/targets") as resp:
                assert resp.status == 401
                assert (await resp.json())["field"] == "Authorization"
            async with http.get(f"{base}/healthz") as resp:
                assert (await resp.json())["status"] == "ok"
            async with http.get(f"{base}/") as resp:
                page = await resp.text()
    finally:
        await monitor.stop()
    assert targets["site-ok"]["up"] is True
    assert targets["site-ok"]["uptime"]["24h"] == 1.0
    assert targets["site-ok"]["labels"] == {"team": "web", "chain": "none"}
    broken = targets["site-broken"]
    assert broken["up"] is False
    assert broken["last_result"]["failure_reason"] == "status"
    assert broken["last_result"]["values"]["status_code"] == 503
    assert broken["uptime"]["24h"] == 0.0
    assert targets["nothing-there"]["last_result"]["failure_reason"] == "refused"
    assert "site-broken" in page and "DOWN" in page


async def test_generated_api_key_is_written_once_and_accepted(tmp_path: Path,
                                                              local_site: str) -> None:
    listen = f"127.0.0.1:{free_port()}"
    config = monitor_config(tmp_path, local_site, listen)
    monitor = Runtime(config, env={})
    await monitor.start()
    try:
        key_file = config.data_dir / "monitor_api_key"
        key = key_file.read_text().strip()
        assert len(key) >= 32 and key_file.stat().st_mode & 0o077 == 0
        async with aiohttp.ClientSession() as http, http.post(
                f"http://{listen}/api/v1/targets",
                headers={"Authorization": f"Bearer {key}"}) as resp:
            assert resp.status == 405  # authenticated; the route just takes no POST
    finally:
        await monitor.stop()
    again = Runtime(config, env={})
    await again.start()
    await again.stop()
    assert key_file.read_text().strip() == key


async def test_chain_metrics_from_ganache_and_documented_nodes(
        tmp_path: Path, ganache_pair: tuple[GanacheNode, GanacheNode],
        fake_nodes: Callable[[], Awaitable[FakeNode]]) -> None:
    main, reference = ganache_pair
    # the nodes are shared with other tests: put the reference 3 blocks ahead, whatever
    # their heights (either may be ahead), so block_lag has something to say
    ahead = await reference.head() - await main.head()
    await (reference.mine(3 - ahead) if ahead < 3 else main.mine(ahead - 3))
    eos, xrpl = await fake_nodes(), await fake_nodes()
    eos.answer("/v1/chain/get_info", json_answer(eos_info(datetime.now(UTC))))
    xrpl.answer("/", json_answer(xrpl_info()))
    listen = f"127.0.0.1:{free_port()}"
    text = f"""
[monitor]
listen = "{listen}"
data_dir = "{tmp_path / 'data'}"
[service]
enabled = false
[[targets]]
name = "eth-ref"
type = "ethereum"
url = "{reference.url}"
interval = "1s"
min_peers = 0
[[targets]]
name = "eth-main"
type = "ethereum"
url = "{main.url}"
interval = "1s"
min_peers = 0
max_lag_blocks = 100000
reference = "eth-ref"
labels = {{ chain = "devnet" }}
[[targets]]
name = "eos-node"
type = "eos"
url = "{eos.url}"
interval = "1s"
[[targets]]
name = "xrpl-node"
type = "xrpl"
url = "{xrpl.url}"
interval = "1s"
"""
    monitor = Runtime(parse(tomllib.loads(text), tmp_path / "config.toml"), env={})
    await monitor.start()
    try:
        async with asyncio.timeout(20):
            # eth-main needs a result of eth-ref before it can give block_lag
            while not all(s.successes >= 2 for s in monitor.states):
                await asyncio.sleep(0.1)
        async with aiohttp.ClientSession() as http, http.get(f"http://{listen}/metrics") as r:
            text = await r.text()
    finally:
        await monitor.stop()
    check = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    heads = {main.url: await main.head(), reference.url: await reference.head()}
    lag = heads[reference.url] - heads[main.url]
    assert lag == 3
    assert f'crypitor_chain_block_lag{{chain="devnet",target="eth-main"}} {float(lag)}' in text
    assert 'crypitor_chain_head_block{chain="ethereum",target="eth-ref"} ' \
        f'{float(heads[reference.url])}' in text
    assert 'crypitor_chain_syncing{chain="devnet",target="eth-main"} 0.0' in text
    assert 'crypitor_chain_peers{chain="devnet",target="eth-main"} 0.0' in text
    assert 'crypitor_chain_id{chain="devnet",target="eth-main"} 1337.0' in text
    assert 'crypitor_chain_head_block{chain="eos",target="eos-node"} 2.72466135e+08' in text
    assert 'crypitor_chain_lib_lag{chain="eos",target="eos-node"} 331.0' in text
    assert 'crypitor_chain_head_block{chain="xrpl",target="xrpl-node"} 8.2521761e+07' in text
    assert 'crypitor_chain_server_state{chain="xrpl",target="xrpl-node"} 4.0' in text
    assert 'crypitor_chain_peers{chain="xrpl",target="xrpl-node"} 22.0' in text
    assert 'probe_success{chain="devnet",target="eth-main",type="ethereum"} 1.0' in text
