"""Issue 12, item 7: after the monitor and its embedded service start on a fresh data_dir,
the directory is 0700 and every file in it (keys, SQLite databases and their -wal/-shm) 0600,
under the usual umask 022."""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.app import Runtime
from monitor.config import parse
from tests.support.net import free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


async def test_fresh_data_dir_is_0700_and_every_file_0600(tmp_path: Path,
                                                          usual_umask: None) -> None:
    data = tmp_path / "data"
    text = f"""
[monitor]
listen = "127.0.0.1:{free_port()}"
data_dir = "{data}"
[service]
listen = "127.0.0.1:{free_port()}"
"""
    runtime = Runtime(parse(tomllib.loads(text), tmp_path / "config.toml"))
    await runtime.start()
    try:
        await runtime.history.flush()
        files = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in data.iterdir()}
    finally:
        await runtime.stop()
    assert {"service.sqlite3", "service.sqlite3-wal", "history.sqlite3", "alerts.sqlite3",
            "service_api_key", "monitor_api_key"} <= set(files), files
    assert files == dict.fromkeys(files, oct(0o600))
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
