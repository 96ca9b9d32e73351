"""One process per data_dir: a second `crypitor run` (or `crypitor service`) on the data
directory of a running one stops at once with one line naming the directory and the first
one's pid, before it opens any file there; the lock goes with its holder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from monitor.datadir import DataDirBusy, DataDirLock
from tests.support.net import free_port


def config_file(path: Path, data: Path, service: bool) -> Path:
    path.write_text(f'[monitor]\nlisten = "127.0.0.1:{free_port()}"\ndata_dir = "{data}"\n'
                    f'[service]\nenabled = {str(service).lower()}\n'
                    f'listen = "127.0.0.1:{free_port()}"\nshutdown_drain = "0s"\n')
    return path


def listen_of(config: Path, section: str) -> str:
    text = config.read_text().split(f"[{section}]")[1]
    return text.split('listen = "')[1].split('"')[0]


def wait_healthy(url: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"{url} not healthy within 30 s")


def test_the_lock_is_exclusive_names_the_holder_and_is_freed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with DataDirLock(data):
        assert (data / ".lock").read_text().strip() == str(os.getpid())
        assert (data / ".lock").stat().st_mode & 0o077 == 0
        with pytest.raises(DataDirBusy) as busy:  # a second open file: refused too
            DataDirLock(data)
        assert str(busy.value) == (
            f"data_dir {data} is in use by another crypitor (pid {os.getpid()}); stop that "
            "one or give this one its own data_dir")
    again = DataDirLock(data)  # released
    again.release()
    again.release()  # twice is harmless


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("command", "section", "service"), [
    ("run", "monitor", False), ("service", "service", True)])
def test_a_second_instance_on_the_same_data_dir_stops_before_opening_anything(
        tmp_path: Path, command: str, section: str, service: bool) -> None:
    data = tmp_path / "data"
    first_config = config_file(tmp_path / "first.toml", data, service)
    env = {"PATH": "/usr/bin:/bin"}
    first = subprocess.Popen([sys.executable, "-m", "monitor", command, "-c",
                              str(first_config)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_healthy(f"http://{listen_of(first_config, section)}/healthz", first)
        before = sorted(p.name for p in data.iterdir())
        # the second one's own ports are free: only the lock can stop it
        second_config = config_file(tmp_path / "second.toml", data, service)
        for cmd in ("run", "service"):
            second = subprocess.run([sys.executable, "-m", "monitor", cmd, "-c",
                                     str(second_config)], capture_output=True, text=True,
                                    timeout=60, env=env)
            assert second.returncode == 1, second.stderr
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1, second.stderr
            assert f"data_dir {data} is in use by another crypitor (pid {first.pid})" \
                in lines[0]
            assert sorted(p.name for p in data.iterdir()) == before  # nothing new made
    finally:
        first.send_signal(signal.SIGTERM)
        _out, err = first.communicate(timeout=30)
    assert first.returncode == 0, err
    # the first one gone, its lock went with it
    again = subprocess.Popen([sys.executable, "-m", "monitor", command, "-c",
                              str(second_config)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_healthy(f"http://{listen_of(second_config, section)}/healthz", again)
    finally:
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=30)
    assert again.returncode == 0
