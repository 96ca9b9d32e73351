"""`crypitor run` and `crypitor probe` as a user runs them: a real process on the shipped
config, offline; SIGTERM ends it cleanly; unreachable public nodes are down with a reason,
logged once, not flooding the log."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]


def shipped_config_copy(tmp_path: Path) -> tuple[Path, int]:
    """The shipped config on a free port, with short intervals so a test sees results."""
    port = free_port()
    text = (ROOT / "config.toml").read_text()
    text = text.replace("127.0.0.1:9300", f"127.0.0.1:{port}")
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{free_port()}")
    text = text.replace('data_dir = "data"', f'data_dir = "{tmp_path / "data"}"')
    text = re.sub(r'interval = "\d+s"', 'interval = "2s"', text)
    text = re.sub(r'timeout = "\d+s"', 'timeout = "2s"', text)
    text = text.replace("[service]", '[service]\nshutdown_drain = "0s"', 1)  # stops at once
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path, port


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.load(resp)


def wait_for(predicate: Any, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except OSError as exc:
            last_error = exc
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {seconds}s (last error: {last_error})")


def test_run_on_shipped_config_offline_then_sigterm(tmp_path: Path) -> None:
    config, port = shipped_config_copy(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "-c", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"PATH": "/usr/bin:/bin"})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: get_json(f"{base}/healthz")["status"] == "ok", 30)

        def all_probed_twice() -> list[dict[str, Any]] | None:
            targets: list[dict[str, Any]] = get_json(f"{base}/api/v1/targets")
            done = all(t["probes"]["success"] + t["probes"]["failure"] >= 2 for t in targets)
            return targets if done else None

        targets = {t["name"]: t for t in wait_for(all_probed_twice, 60)}
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    for name in ("monitor-healthz", "monitor-metrics", "monitor-port", "webhook-api",
                 "webhook-store", "webhook-canary"):
        assert targets[name]["up"] is True, targets[name]
    for name in ("eth-public", "eos-public", "xrpl-public"):
        last = targets[name]["last_result"]
        assert targets[name]["up"] is False
        # offline: the name does not resolve, or the network is unreachable / filtered
        assert last["failure_reason"] in {"dns", "connect", "timeout", "refused"}, last
        assert last["detail"]
        # one line when it went down, not one per probe
        assert err.count(f"target {name} is DOWN") == 1, err
    canary = targets["webhook-canary"]["last_result"]["values"]
    assert canary["delivery_seconds"] > 0  # through the SSRF guard, which is on here
    assert "shutting down" in err and "stopped" in err


def test_probe_command_prints_json_and_exit_code(tmp_path: Path) -> None:
    config, _port = shipped_config_copy(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "monitor", "probe", "eos-public", "-c",
                           str(config)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1  # down: offline
    result = json.loads(proc.stdout)
    assert result["target"] == "eos-public" and result["type"] == "eos"
    assert result["success"] is False and result["failure_reason"]
    unknown = subprocess.run([sys.executable, "-m", "monitor", "probe", "nope", "-c",
                              str(config)], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2
    assert "no target named 'nope'" in unknown.stderr and "eos-public" in unknown.stderr


def test_run_refuses_to_start_with_a_clear_message(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cases = {
            "port in use": (f'[monitor]\nlisten = "127.0.0.1:{port}"\n', "cannot start:"),
            "unset key": (f'[monitor]\nlisten = "127.0.0.1:{free_port()}"\n'
                          'api_keys = ["env:CRYPITOR_TEST_UNSET_KEY"]\n',
                          "monitor.api_keys[0]: environment variable CRYPITOR_TEST_UNSET_KEY"
                          " is not set"),
        }
        for name, (text, expected) in cases.items():
            config = tmp_path / f"{name.replace(' ', '_')}.toml"
            config.write_text(text + f'data_dir = "{tmp_path / "data"}"\n'
                              "[service]\nenabled = false\n")
            proc = subprocess.run([sys.executable, "-m", "monitor", "run", "-c", str(config)],
                                  capture_output=True, text=True, timeout=60,
                                  env={"PATH": "/usr/bin:/bin"})
            assert proc.returncode == 1, (name, proc.stderr)
            assert expected in proc.stderr, (name, proc.stderr)
            assert "Traceback" not in proc.stderr


def test_a_store_file_of_an_unknown_version_stops_the_start_with_one_line(
        tmp_path: Path) -> None:
    """A file a newer build wrote (schema version 999): `run` and `service` exit 1 naming
    it, without a traceback, and leave the file as it was."""
    cases = [("run", "history.sqlite3", "false"), ("run", "alerts.sqlite3", "false"),
             ("run", "service.sqlite3", "true"), ("service", "service.sqlite3", "true")]
    for command, name, service in cases:
        data = tmp_path / f"{command}-{name}"
        data.mkdir()
        conn = sqlite3.connect(data / name)
        conn.execute("PRAGMA user_version = 999")
        conn.close()
        config = data / "config.toml"
        config.write_text(f'[monitor]\nlisten = "127.0.0.1:{free_port()}"\n'
                          f'data_dir = "{data}"\n[service]\nenabled = {service}\n'
                          f'listen = "127.0.0.1:{free_port()}"\napi_keys = ["k"]\n')
        proc = subprocess.run([sys.executable, "-m", "monitor", command, "-c", str(config)],
                              capture_output=True, text=True, timeout=60,
                              env={"PATH": "/usr/bin:/bin"})
        assert proc.returncode == 1, (command, name, proc.stderr)
        assert f"{data / name} has schema version 999; this build knows versions" \
            in proc.stderr, (command, name, proc.stderr)
        assert "Traceback" not in proc.stderr, (command, name, proc.stderr)
        conn = sqlite3.connect(data / name)
        assert conn.execute("PRAGMA user_version").fetchone() == (999,)
        conn.close()
