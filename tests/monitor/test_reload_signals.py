"""SIGHUP as an operator sends it: `crypitor run` re-reads its config file (a target added,
the API key rotated, an invalid file refused with every error logged), and `crypitor service`
rotates its API keys on one kept-alive connection. Real processes, real config files."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.monitor.test_cli import get_json, wait_for
from tests.support.net import free_port


def post_status(url: str, key: str) -> int:
    request = urllib.request.Request(url, method="POST",
                                     headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def metric(base: str, name: str) -> float | None:
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def run_config(port: int, data: Path, key: str, targets: list[str],
               interval: str = "1s") -> str:
    text = (f'[monitor]\nlisten = "127.0.0.1:{port}"\ndata_dir = "{data}"\n'
            f'api_keys = ["{key}"]\n[service]\nenabled = false\n')
    for name in targets:
        text += (f'[[targets]]\nname = "{name}"\ntype = "http"\n'
                 f'url = "http://127.0.0.1:{port}/healthz"\ninterval = "{interval}"\n'
                 'timeout = "1s"\n')
    return text


def test_run_reloads_its_config_file_on_sighup(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "config.toml"
    config.write_text(run_config(port, tmp_path / "data", "key-1", ["self"]))
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "-c", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"PATH": "/usr/bin:/bin"})
    try:
        wait_for(lambda: metric(base, "crypitor_config_last_reload_successful") == 1.0, 30)
        first = metric(base, "crypitor_config_last_reload_success_timestamp_seconds")

        def probed(name: str, times: int) -> Any:
            def check() -> bool:
                targets = {t["name"]: t for t in get_json(f"{base}/api/v1/targets")}
                t = targets.get(name)
                return t is not None and t["probes"]["success"] >= times
            return check

        wait_for(probed("self", 2), 30)
        config.write_text(run_config(port, tmp_path / "data", "key-2", ["self", "again"]))
        proc.send_signal(signal.SIGHUP)
        wait_for(probed("again", 1), 30)
        assert [t["name"] for t in get_json(f"{base}/api/v1/targets")] == ["self", "again"]
        # the reload that added the target rotated the key in the same step
        assert post_status(f"{base}/-/reload", "key-1") == 401
        assert post_status(f"{base}/-/reload", "key-2") == 200
        second = metric(base, "crypitor_config_last_reload_success_timestamp_seconds")
        assert first is not None and second is not None and second > first

        config.write_text(run_config(port, tmp_path / "data", "key-3", ["self"], "fast"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: metric(base, "crypitor_config_last_reload_successful") == 0.0, 30)
        assert [t["name"] for t in get_json(f"{base}/api/v1/targets")] == ["self", "again"]
        assert post_status(f"{base}/-/reload", "key-3") == 401  # the old config runs
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "SIGHUP: reading the config file again" in err
    assert "config reloaded" in err and "added: again" in err
    assert 'targets[0].interval: must be a duration like "30s" (got "fast")' in err
    assert "refused, the running config stays" in err


def service_config(port: int, data: Path, key: str) -> str:
    return (f'[monitor]\ndata_dir = "{data}"\n'
            f'[service]\nlisten = "127.0.0.1:{port}"\napi_keys = ["{key}"]\n')


def test_service_rotates_its_keys_on_sighup_on_a_kept_connection(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(service_config(port, tmp_path / "data", "old-key"))
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "service", "-c", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"PATH": "/usr/bin:/bin"})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def status(key: str) -> int:
        conn.request("GET", "/v1/endpoints", headers={"Authorization": f"Bearer {key}"})
        resp = conn.getresponse()
        json.loads(resp.read())
        return resp.status

    try:
        wait_for(lambda: get_json(f"http://127.0.0.1:{port}/healthz"), 30)
        assert status("old-key") == 200
        sock = conn.sock
        config.write_text(service_config(port, tmp_path / "data", "new-key"))
        proc.send_signal(signal.SIGHUP)
        # polled with the old key, which costs no throttle tokens until it fails once
        wait_for(lambda: status("old-key") == 401, 30)
        assert status("new-key") == 200
        assert conn.sock is sock  # the same connection all along
    finally:
        conn.close()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "service API keys and allowed networks applied" in err
