"""SIGTERM drains the listeners of a real `crypitor run`: `/readyz` of the monitor and of
the embedded service answer 503 at once while every other request is still served with
`Connection: close`, the status page's own listener (`[status_page].listen`) likewise; then
the listeners close and the process exits 0. A second signal skips the rest of the drain."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.support.draining import until_not_ready, until_refused
from tests.support.net import free_port

KEY = "drain-test-key"


def _config(tmp_path: Path, drain: str) -> tuple[Path, str, str, str]:
    """The config file, and the base URLs of the monitor, the service and the status page."""
    monitor, service, status = (f"127.0.0.1:{free_port()}" for _ in range(3))
    path = tmp_path / "config.toml"
    path.write_text(f'[monitor]\nlisten = "{monitor}"\ndata_dir = "{tmp_path / "data"}"\n'
                    f'api_keys = ["{KEY}"]\n'
                    f'[service]\nlisten = "{service}"\napi_keys = ["{KEY}"]\n'
                    f'shutdown_drain = "{drain}"\nshutdown_timeout = "5s"\n'
                    f'[status_page]\nlisten = "{status}"\n')
    return path, f"http://{monitor}", f"http://{service}", f"http://{status}"


async def _ready(http: aiohttp.ClientSession, *bases: str) -> None:
    async with asyncio.timeout(30):
        for base in bases:
            while True:
                try:
                    async with http.get(f"{base}/readyz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)


def _start(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "monitor", "run", "-c", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _exit(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err.decode()


@pytest.mark.timeout(60)
async def test_sigterm_drains_every_listener_of_crypitor_run(tmp_path: Path) -> None:
    config, monitor, service, status = _config(tmp_path, "2s")
    proc = _start(config)
    try:
        async with aiohttp.ClientSession() as http:
            await _ready(http, monitor, service)
            async with http.get(f"{status}/api/v1/status") as resp:  # up, kept alive
                assert resp.status == 200
                assert resp.headers.get("Connection") != "close"
            proc.send_signal(signal.SIGTERM)
            assert (await until_not_ready(http, monitor)).headers["Connection"] == "close"
            assert (await until_not_ready(http, service)).headers["Connection"] == "close"
            async with http.get(f"{monitor}/api/v1/targets") as resp:  # still served
                assert resp.status == 200
                assert resp.headers["Connection"] == "close"
            async with http.post(f"{service}/v1/events", json={"type": "t", "data": {}},
                                 headers={"Authorization": f"Bearer {KEY}"}) as resp:
                assert resp.status == 202
                assert resp.headers["Connection"] == "close"
            for path in ("/", "/api/v1/status", "/feed.atom"):  # the status page: still served
                async with http.get(f"{status}{path}") as resp:
                    assert resp.status == 200, path
                    assert resp.headers["Connection"] == "close", path
            await until_refused(http, monitor)
            await until_refused(http, service)
            await until_refused(http, status)
        code, err = await asyncio.to_thread(_exit, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, err
    assert "Traceback" not in err
    for phase in ("shutting down", "draining for 2s", "closing the listeners", "stopped"):
        assert phase in err, err


@pytest.mark.timeout(60)
async def test_a_second_signal_ends_the_drain_of_crypitor_run(tmp_path: Path) -> None:
    config, monitor, service, _ = _config(tmp_path, "10m")  # beyond the test's own limit
    proc = _start(config)
    try:
        async with aiohttp.ClientSession() as http:
            await _ready(http, monitor, service)
            proc.send_signal(signal.SIGTERM)
            assert (await until_not_ready(http, monitor)).headers["Connection"] == "close"
            proc.send_signal(signal.SIGINT)
            code, err = await asyncio.to_thread(_exit, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0, err
    assert "Traceback" not in err
    assert "second stop signal: stopping at once" in err, err
