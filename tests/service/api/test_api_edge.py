"""The service API's HTTP edge, over raw loopback sockets: any `Authorization` value is a 401
JSON, an oversized header is refused without a byte of it echoed or logged, a client hanging
up mid-body is a DEBUG line and a counter, wrong keys are throttled per address (never a
valid one)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import generate_latest

from core import signing
from core.httpserver import AUTH_BURST, AuthThrottle, HardenedRunner, start_server
from service.api import ApiDeps, ServiceApi
from service.metrics import ServiceMetrics, new_metrics
from service.store.sqlite import SqliteStore
from tests.support.net import free_port
from tests.support.rawhttp import exchange, hang_up_mid_body, parse_answer, request_bytes

KEY = "edge-service-key"
SECRET = b"TOPSECRETKEYBYTES"


@dataclass
class Api:
    listen: str
    metrics: ServiceMetrics
    now: list[float]  # the throttle's clock, moved by the test


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = SqliteStore(tmp_path / "service.sqlite3")
    await store.open()
    metrics = new_metrics()
    now = [0.0]
    deps = ApiDeps(store, metrics, [KEY], lambda _url: None, signing.new_secret,
                   signing.parse_secret)
    listen = f"127.0.0.1:{free_port()}"
    runner: HardenedRunner = await start_server(
        ServiceApi(deps, AuthThrottle(clock=lambda: now[0])).app(), listen)
    try:
        yield Api(listen, metrics, now)
    finally:
        await runner.cleanup()
        await store.close()


def counter(metrics: ServiceMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name, {"server": "service"})
    return value or 0.0


@pytest.mark.parametrize("value", [
    "Bearer é-key".encode(), b"Bearer \xff\xfe\x80", b"", b"Basic dXNlcjpwYXNz", b"Bearer",
    b"bearer " + KEY.encode(), b"Bearer " + b"k" * 8000, b"Bearer  " + KEY.encode(),
], ids=["utf8", "latin1-bytes", "empty", "basic", "bare-scheme", "lower-scheme", "8000-bytes",
        "two-spaces"])
async def test_any_authorization_value_is_a_401_naming_it(api: Api, value: bytes) -> None:
    answer = await exchange(api.listen, request_bytes(
        "GET", "/v1/endpoints", [("Authorization", value)]))
    status, headers, body = parse_answer(answer)
    assert status == 401 and headers["content-type"].startswith("application/json")
    assert body["field"] == "Authorization"


async def test_oversized_header_is_refused_without_echoing_or_logging_it(
        api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name, value in [("Authorization", b"Bearer " + SECRET * 1000),
                        ("X-Other", SECRET * 1000)]:
        answer = await exchange(api.listen, request_bytes("GET", "/v1/endpoints",
                                                          [(name, value)]))
        status, headers, body = parse_answer(answer)
        assert status == 431 and headers["content-type"].startswith("application/json")
        assert body["field"] is None
        assert SECRET not in answer
    assert SECRET.decode() not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    # a request line past the limit too
    answer = await exchange(api.listen, request_bytes(
        "GET", "/v1/endpoints?k=" + SECRET.decode() * 1000, []))
    assert parse_answer(answer)[0] == 431 and SECRET not in answer
    assert SECRET.decode() not in caplog.text


async def test_a_client_hanging_up_mid_body_is_a_debug_line_and_a_counter(
        api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    name = "crypitor_http_client_disconnects_total"
    for path in ("/v1/events", "/v1/endpoints"):
        before = counter(api.metrics, name)
        await hang_up_mid_body(api.listen, path, [("Authorization", f"Bearer {KEY}".encode())])
        while counter(api.metrics, name) == before:  # the test's timeout bounds the wait
            await asyncio.sleep(0.01)
        assert counter(api.metrics, name) == before + 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    metrics = generate_latest(api.metrics.registry).decode()
    assert f'{name}{{server="service"}} 2.0' in metrics  # on the service's /metrics


async def test_wrong_keys_are_throttled_per_address_never_a_valid_one(api: Api) -> None:
    base = f"http://{api.listen}"
    async with aiohttp.ClientSession() as http:
        async def status(key: str) -> tuple[int, str | None]:
            async with http.get(f"{base}/v1/endpoints",
                                headers={"Authorization": f"Bearer {key}"}) as resp:
                if resp.status in (401, 429):
                    assert (await resp.json())["field"] == "Authorization"
                return resp.status, resp.headers.get("Retry-After")

        for _ in range(AUTH_BURST):
            assert await status("wrong") == (401, None)
        code, retry_after = await status("wrong")
        assert code == 429 and retry_after is not None and int(retry_after) >= 1
        assert (await status(KEY))[0] == 200  # the valid key from the same address
        async with http.post(f"{base}/v1/events", json={"type": "t", "data": {}},
                             headers={"Authorization": f"Bearer {KEY}"}) as resp:
            assert resp.status == 202
        assert counter(api.metrics, "crypitor_http_auth_throttled_total") == 1
        api.now[0] += float(retry_after)  # the bucket refills with time
        assert (await status("wrong"))[0] == 401
