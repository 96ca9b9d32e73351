"""The monitor API's HTTP edge, over raw loopback sockets, as served by `crypitor run`: any
`Authorization` value on a mutating route is a 401 JSON, an oversized header is refused
without a byte of it echoed or logged, a client hanging up mid-body is a DEBUG line and a
counter on the monitor's /metrics, wrong keys are throttled per address (never a valid one)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from core.httpserver import AUTH_BURST, AuthThrottle, start_server
from monitor.runtime import UptimeHistory
from monitor.web import MonitorApi
from tests.support.net import free_port
from tests.support.rawhttp import exchange, hang_up_mid_body, parse_answer, request_bytes

KEY = "edge-monitor-key"
SECRET = b"TOPSECRETKEYBYTES"
AUTH = ("Authorization", f"Bearer {KEY}".encode())


@dataclass
class Api:
    listen: str
    registry: CollectorRegistry
    now: list[float]


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async def echo(request: web.Request) -> web.Response:  # a mutating route reading a body
        return web.json_response({"read": len(await request.read())}, status=202)

    def routes(router: web.UrlDispatcher) -> None:
        router.add_post("/api/v1/echo", echo)

    registry = CollectorRegistry()
    history = UptimeHistory(tmp_path / "history.sqlite3")
    now = [0.0]
    app = MonitorApi([], registry, history, [KEY], extra_routes=routes,
                     throttle=AuthThrottle(clock=lambda: now[0])).app()
    listen = f"127.0.0.1:{free_port()}"
    runner = await start_server(app, listen)
    try:
        yield Api(listen, registry, now)
    finally:
        await runner.cleanup()
        history.close()


def counter(api: Api, name: str) -> float:
    return api.registry.get_sample_value(name, {"server": "monitor"}) or 0.0


@pytest.mark.parametrize("value", [
    "Bearer é-key".encode(), b"Bearer \xff\xfe\x80", b"", b"Basic dXNlcjpwYXNz", b"Bearer",
    b"Bearer " + b"k" * 8000,
], ids=["utf8", "latin1-bytes", "empty", "basic", "bare-scheme", "8000-bytes"])
async def test_any_authorization_value_is_a_401_naming_it(api: Api, value: bytes) -> None:
    answer = await exchange(api.listen, request_bytes(
        "POST", "/api/v1/echo", [("Authorization", value)], b"{}"))
    status, headers, body = parse_answer(answer)
    assert status == 401 and headers["content-type"].startswith("application/json")
    assert body["field"] == "Authorization"


async def test_oversized_header_is_refused_without_echoing_or_logging_it(
        api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for method, path in (("POST", "/api/v1/echo"), ("GET", "/metrics")):
        answer = await exchange(api.listen, request_bytes(
            method, path, [("Authorization", b"Bearer " + SECRET * 1000)]))
        status, headers, body = parse_answer(answer)
        assert status == 431 and headers["content-type"].startswith("application/json")
        assert body["field"] is None and SECRET not in answer
    assert SECRET.decode() not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_client_hanging_up_mid_body_is_a_debug_line_and_a_counter(
        api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    name = "crypitor_http_client_disconnects_total"
    await hang_up_mid_body(api.listen, "/api/v1/echo", [AUTH])
    while counter(api, name) == 0:  # the test's timeout bounds the wait
        await asyncio.sleep(0.01)
    assert counter(api, name) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert f'{name}{{server="monitor"}} 1.0' in generate_latest(api.registry).decode()


async def test_wrong_keys_are_throttled_per_address_never_a_valid_one(api: Api) -> None:
    async with aiohttp.ClientSession() as http:
        async def post(key: str) -> tuple[int, str | None]:
            async with http.post(f"http://{api.listen}/api/v1/echo", json={},
                                 headers={"Authorization": f"Bearer {key}"}) as resp:
                if resp.status in (401, 429):
                    assert (await resp.json())["field"] == "Authorization"
                return resp.status, resp.headers.get("Retry-After")

        for _ in range(AUTH_BURST):
            assert await post("wrong") == (401, None)
        code, retry_after = await post("wrong")
        assert code == 429 and retry_after is not None and int(retry_after) >= 1
        assert (await post(KEY))[0] == 202  # the valid key from the same address
        async with http.get(f"http://{api.listen}/healthz") as resp:  # reads need no key
            assert resp.status == 200
        assert counter(api, "crypitor_http_auth_throttled_total") == 1
        api.now[0] += float(retry_after)
        assert (await post("wrong"))[0] == 401
