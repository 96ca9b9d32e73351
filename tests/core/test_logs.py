"""Log lines: the JSON form is Cloud Logging's structured payload (time, severity, message,
logger, the event's own fields, a traceback inside the message), and `crypitor run` and
`crypitor service` print nothing else on stderr with `--log-format json` or
`[monitor].log_format = "json"`."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.logs import JsonFormatter, TextFormatter, severity
from tests.support.net import free_port
from tests.support.tools import ROOT

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _record(level: int, msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.getLogger("crypitor.test").makeRecord(
        "crypitor.test", level, __file__, 1, msg, args, None, extra=extra)
    record.created = 1_765_000_000.25
    return record


def test_json_line_has_cloud_logging_fields_and_the_events_own() -> None:
    line = JsonFormatter().format(_record(logging.WARNING, "target %s is DOWN", "eth",
                                          target="eth", alertname="TargetDown"))
    entry = json.loads(line)
    assert entry == {"time": "2025-12-06T05:46:40.250Z", "severity": "WARNING",
                     "message": "target eth is DOWN", "logger": "crypitor.test",
                     "target": "eth", "alertname": "TargetDown"}
    assert RFC3339_MS.match(entry["time"])
    assert "\n" not in line  # one entry per line


def test_a_traceback_goes_inside_the_message() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord("x", logging.ERROR, __file__, 1,
                                                   "task crashed", (), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert entry["severity"] == "ERROR"
    assert entry["message"].startswith("task crashed\nTraceback (most recent call last):")
    assert "ValueError: boom" in entry["message"]
    text = TextFormatter().format(record)
    assert " ERROR   x: task crashed\nTraceback" in text


@pytest.mark.parametrize(("level", "expected"), [
    (logging.DEBUG, "DEBUG"), (logging.INFO, "INFO"), (25, "WARNING"),
    (logging.ERROR, "ERROR"), (logging.CRITICAL, "CRITICAL"), (60, "CRITICAL")])
def test_severity_of_every_level(level: int, expected: str) -> None:
    assert severity(level) == expected


def test_values_json_cannot_encode_are_written_as_text() -> None:
    entry = json.loads(JsonFormatter().format(_record(logging.INFO, "x", path=Path("/a"))))
    assert entry["path"] == "/a"


def _config(tmp_path: Path, log_format: str | None) -> Path:
    path = tmp_path / "config.toml"
    line = f'log_format = "{log_format}"\n' if log_format else ""
    path.write_text(
        f'[monitor]\nlisten = "127.0.0.1:{free_port()}"\ndata_dir = "{tmp_path / "data"}"\n'
        f'{line}[service]\nlisten = "127.0.0.1:{free_port()}"\nshutdown_drain = "0s"\n'
        f'[[targets]]\nname = "closed"\ntype = "tcp"\nurl = "tcp://127.0.0.1:{free_port()}"\n'
        f'interval = "1s"\ntimeout = "1s"\n')
    return path


def _run(args: list[str], tmp_path: Path, until: str) -> list[str]:
    """Start `crypitor ARGS`, wait (bounded) until its stderr holds `until`, stop it with
    SIGTERM; its stderr lines."""
    log = tmp_path / "stderr.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "monitor", *args], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while until not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return log.read_text().splitlines()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["flag", "config"])
def test_crypitor_run_prints_only_json_lines(tmp_path: Path, how: str) -> None:
    path = _config(tmp_path, "json" if how == "config" else None)
    flag = ["--log-format", "json"] if how == "flag" else []
    lines = _run(["run", "-c", str(path), *flag], tmp_path, "FIRING")
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "severity", "message", "logger"} <= set(e) for e in entries)
    assert any(e["message"] == "stopped" for e in entries)
    down = [e for e in entries if "is DOWN" in e["message"]]
    assert down and down[0]["severity"] == "WARNING"
    assert down[0]["target"] == "closed" and down[0]["failure_reason"] == "refused"
    firing = [e for e in entries if "FIRING" in e["message"]]
    assert firing[0]["alertname"] == "TargetDown" and firing[0]["target"] == "closed"
    assert firing[0]["alert_severity"] == "critical"  # "severity" is the log line's own


@pytest.mark.timeout(120)
def test_crypitor_service_prints_only_json_lines_and_the_flag_beats_the_config(
        tmp_path: Path) -> None:
    path = _config(tmp_path, "text")
    lines = _run(["service", "-c", str(path), "--log-format", "json"], tmp_path, "listening")
    entries = [json.loads(line) for line in lines]
    assert entries and all(e["severity"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
                           for e in entries)


def test_a_bad_log_format_names_key_and_value(tmp_path: Path) -> None:
    path = _config(tmp_path, "xml")
    done = subprocess.run([sys.executable, "-m", "monitor", "check-config", "-c", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert 'monitor.log_format: must be "text" or "json" (got "xml")' in done.stderr
