"""`crypitor probe` on a webhook_canary, as a user runs it on the shipped config: with nothing
running it starts the sink (and the embedded service the canary goes through) for that one
run and reports the healthy canary up; beside a running `crypitor run` it says why it
cannot, and points at the running monitor, instead of reporting the canary down."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.monitor.test_cli import get_json, shipped_config_copy, wait_for

ENV = {"PATH": "/usr/bin:/bin"}


def probe(config: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", "probe", name, "-c", str(config)],
                          capture_output=True, text=True, timeout=60, env=ENV)


@pytest.mark.timeout(120)
def test_probe_runs_a_healthy_canary_through_the_embedded_service(tmp_path: Path) -> None:
    config, port = shipped_config_copy(tmp_path)
    for _ in range(2):  # the second run re-registers over the first one's endpoint
        proc = probe(config, "webhook-canary")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout)
        assert result["target"] == "webhook-canary" and result["type"] == "webhook_canary"
        assert result["success"] is True and result["failure_reason"] is None, result
        assert result["values"]["delivery_seconds"] > 0
        assert "Traceback" not in proc.stderr
    # what it started is gone: a real `crypitor run` takes both addresses and the data_dir
    run = subprocess.Popen([sys.executable, "-m", "monitor", "run", "-c", str(config)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: get_json(f"{base}/healthz")["status"] == "ok", 30)
        beside = probe(config, "webhook-canary")
    finally:
        run.send_signal(signal.SIGTERM)
        _out, err = run.communicate(timeout=30)
    assert run.returncode == 0, err
    assert beside.returncode == 1 and beside.stdout == "", beside.stdout
    (line,) = beside.stderr.strip().splitlines()
    assert line.startswith("cannot probe webhook-canary: the canary's sink lives on "
                           f"[monitor].listen 127.0.0.1:{port}, which is in use"), line
    assert f"GET {base}/api/v1/targets/webhook-canary" in line
    assert "config" not in line


@pytest.mark.timeout(60)
def test_probe_of_a_canary_whose_service_is_down_is_down_not_config(tmp_path: Path) -> None:
    config, _port = shipped_config_copy(tmp_path)
    text = config.read_text().replace("enabled = true", "enabled = false", 1)
    text = text.replace('max_delivery = "5s"', 'max_delivery = "5s"\napi_key = "some-key"')
    config.write_text(text)
    proc = probe(config, "webhook-canary")
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["success"] is False and result["failure_reason"] == "refused", result
