"""The webhook canary: a real monitor with its embedded service, the SSRF guard on, and the
canary's signed event travelling service → monitor sink; plus its failure modes."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import aiohttp

from monitor.app import Runtime
from monitor.config import parse
from tests.support.net import free_port


def config_text(tmp_path: Path, listen: str, service: str, extra: str = "") -> str:
    return f"""
[monitor]
listen = "{listen}"
data_dir = "{tmp_path / 'data'}"
[service]
listen = "{service}"
[[targets]]
name = "canary"
type = "webhook_canary"
url = "http://{service}"
interval = "1s"
timeout = "1s"
{extra}
"""


async def run_until_probed(tmp_path: Path, text: str, runs: int = 2) -> Runtime:
    monitor = Runtime(parse(tomllib.loads(text), tmp_path / "config.toml"), env={})
    await monitor.start()
    try:
        async with asyncio.timeout(20):
            while monitor.states[0].successes + monitor.states[0].failures < runs:
                await asyncio.sleep(0.05)
    finally:
        await monitor.stop()
    return monitor


async def test_canary_measures_delivery_through_the_guarded_service(tmp_path: Path) -> None:
    listen, service = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    monitor = await run_until_probed(tmp_path, config_text(tmp_path, listen, service))
    state = monitor.states[0]
    assert state.last is not None and state.last.success, state.last
    seconds = state.last.values["delivery_seconds"]
    assert isinstance(seconds, float) and seconds > 0
    assert state.failures == 0


async def test_canary_too_slow_for_its_limit(tmp_path: Path) -> None:
    listen, service = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    text = config_text(tmp_path, listen, service, 'max_delivery = "1ms"')
    monitor = await run_until_probed(tmp_path, text)
    last = monitor.states[0].last
    assert last is not None and last.reason is not None
    assert last.reason.value == "slow" and "at most 0.001s" in last.detail
    assert "delivery_seconds" in last.values  # what it measured, though it failed


async def test_canary_with_a_wrong_key_or_no_service(tmp_path: Path) -> None:
    listen, service = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    text = config_text(tmp_path, listen, service, 'api_key = "wrong"')
    last = (await run_until_probed(tmp_path, text, runs=1)).states[0].last
    assert last is not None and last.reason is not None
    assert last.reason.value == "status" and "401" in last.detail
    nowhere = f"127.0.0.1:{free_port()}"
    text = config_text(tmp_path, listen, service).replace(f'url = "http://{service}"',
                                                           f'url = "http://{nowhere}"')
    last = (await run_until_probed(tmp_path, text, runs=1)).states[0].last
    assert last is not None and last.reason is not None and last.reason.value == "refused"


async def test_the_sink_refuses_unsigned_deliveries(tmp_path: Path) -> None:
    listen, service = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    monitor = Runtime(parse(tomllib.loads(config_text(tmp_path, listen, service)),
                            tmp_path / "config.toml"), env={})
    await monitor.start()
    try:
        async with aiohttp.ClientSession() as http, http.post(
                f"http://{listen}/canary/anything", json={"data": {"nonce": "x"}},
                headers={"webhook-id": "msg_1", "webhook-timestamp": "1",
                         "webhook-signature": "v1,Zm9v"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["field"] == "webhook-signature"
    finally:
        await monitor.stop()


async def test_only_the_canary_reaches_the_monitor_through_the_guard(tmp_path: Path) -> None:
    # the sink's exemption is its own path: a customer endpoint aimed at the monitor's API on
    # the same port is refused at registration (an IP literal) or when it is dialled (a name)
    listen, service = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    port = listen.rpartition(":")[2]
    text = config_text(tmp_path, listen, service).replace(
        "[service]\n", '[service]\napi_keys = ["svc-key"]\n')
    monitor = Runtime(parse(tomllib.loads(text), tmp_path / "config.toml"), env={})
    await monitor.start()
    auth = {"Authorization": "Bearer svc-key"}
    try:
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.post(f"http://{service}/v1/endpoints", json={
                    "url": f"http://127.0.0.1:{port}/api/v1/targets"}) as resp:
                assert resp.status == 422 and (await resp.json())["field"] == "url"
            async with http.post(f"http://{service}/v1/endpoints", json={
                    "url": f"http://localhost:{port}/api/v1/targets",
                    "event_types": ["customer.thing"]}) as resp:
                assert resp.status == 201
            async with http.post(f"http://{service}/v1/events", json={
                    "type": "customer.thing", "data": {}}) as resp:
                assert resp.status == 202
                event_id = (await resp.json())["id"]
            async with asyncio.timeout(20):
                attempts: list[dict[str, object]] = []
                while not attempts:
                    async with http.get(f"http://{service}/v1/events/{event_id}") as resp:
                        attempts = (await resp.json())["deliveries"][0]["attempts"]
                    await asyncio.sleep(0.05)
            [attempt] = attempts
            assert attempt["status_code"] is None, attempt
            assert "SSRF guard" in str(attempt["error"])
            assert "canary" not in str(attempt)  # nothing of the monitor's answer
            async with asyncio.timeout(20):
                while monitor.states[0].successes < 1:
                    await asyncio.sleep(0.05)
        assert monitor.states[0].failures == 0
    finally:
        await monitor.stop()
