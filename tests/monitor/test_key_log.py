"""Where the generated API keys come from, as the log says it: "generated" only on the start
that wrote the key file, "read from" on every later start (monitor and service alike); a
configured key is not mentioned."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest

from monitor.app import Runtime
from monitor.config import ServiceSection, parse
from service.app import Service
from service.keys import load_api_keys
from tests.support.net import free_port


def key_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "API key:" in r.getMessage()]


def test_load_api_keys_says_whether_it_wrote_the_file(tmp_path: Path) -> None:
    first = load_api_keys([], tmp_path, "k")
    again = load_api_keys([], tmp_path, "k")
    assert first.created and not again.created
    assert first.keys == again.keys and first.file == again.file == tmp_path / "k"
    assert first.origin("x API key") == f"x API key: generated, read it from {tmp_path / 'k'}"
    assert again.origin("x API key") == (
        f"x API key: read from {tmp_path / 'k'} (generated on an earlier start)")
    configured = load_api_keys(["", "mine"], tmp_path / "other", "k")
    assert configured.keys == ["mine"] and configured.origin("x") is None
    assert not (tmp_path / "other").exists()


@pytest.mark.timeout(60)
async def test_monitor_and_service_log_generated_once_then_read_from(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="crypitor")
    text = f"""
[monitor]
listen = "127.0.0.1:{free_port()}"
data_dir = "{tmp_path / 'data'}"
[service]
listen = "127.0.0.1:{free_port()}"
shutdown_drain = "0s"
"""
    config = parse(tomllib.loads(text), tmp_path / "config.toml")
    for _ in range(2):
        runtime = Runtime(config, env={})
        await runtime.start()
        await runtime.stop()
    data = tmp_path / "data"
    assert key_lines(caplog) == [
        f"monitor API key: generated, read it from {data / 'monitor_api_key'}",
        f"service API key: generated, read it from {data / 'service_api_key'}",
        f"monitor API key: read from {data / 'monitor_api_key'} (generated on an earlier "
        "start)",
        f"service API key: read from {data / 'service_api_key'} (generated on an earlier "
        "start)"]

    caplog.clear()
    alone = tmp_path / "alone"
    for _ in range(2):
        service = Service(ServiceSection(listen=f"127.0.0.1:{free_port()}"), alone)
        await service.start()
        await service.stop()
    assert key_lines(caplog) == [
        f"service API key: generated, read it from {alone / 'service_api_key'}",
        f"service API key: read from {alone / 'service_api_key'} (generated on an earlier "
        "start)"]
    caplog.clear()
    configured = Service(ServiceSection(listen=f"127.0.0.1:{free_port()}", api_keys=("k",)),
                         tmp_path / "configured")
    await configured.start()
    await configured.stop()
    assert key_lines(caplog) == []
