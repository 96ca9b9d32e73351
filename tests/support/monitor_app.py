"""A real `crypitor run` monitor in process for the monitor API tests: alerting routes, the
embedded service and a webhook canary (so the canary sink is mounted), a known API key."""

from __future__ import annotations

import contextlib
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

from monitor.app import Runtime
from monitor.config import parse
from tests.support.net import free_port

MONITOR_KEY = "test-monitor-key"


@contextlib.asynccontextmanager
async def running_monitor(tmp_path: Path) -> AsyncIterator[Runtime]:
    text = f"""
[monitor]
listen = "127.0.0.1:{free_port()}"
data_dir = "{tmp_path / 'data'}"
api_keys = ["{MONITOR_KEY}"]
[service]
listen = "127.0.0.1:{free_port()}"
[[targets]]
name = "canary"
type = "webhook_canary"
url = "http://127.0.0.1:1"
interval = "1h"
timeout = "1s"
"""
    m = Runtime(parse(tomllib.loads(text), tmp_path / "config.toml"), env={})
    await m.start()
    try:
        yield m
    finally:
        await m.stop()
