"""The HTTP edge both servers share: the header-read timeout on a real loopback server, the
failed-authentication bucket on a clock the test moves, and the bearer check for any value."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from core.httpserver import AuthThrottle, bearer_matches, start_server
from tests.support.net import free_port
from tests.support.rawhttp import never_finish_headers


async def test_a_connection_that_never_finishes_its_headers_is_closed() -> None:
    async def ok(_r: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/healthz", ok)
    listen = f"127.0.0.1:{free_port()}"
    runner = await start_server(app, listen, header_timeout=0.3)
    try:
        async with asyncio.timeout(20):  # the test's deadline, far above the 0.3 s
            assert await never_finish_headers(listen) == b""  # closed, nothing said
        async with aiohttp.ClientSession() as http:  # a complete request is served as before
            for _ in range(2):  # on one kept-alive connection
                async with http.get(f"http://{listen}/healthz") as resp:
                    assert resp.status == 200 and await resp.text() == "ok"
    finally:
        await runner.cleanup()


def test_failures_spend_a_bucket_that_refills_per_address() -> None:
    now = [100.0]
    throttle = AuthThrottle(burst=3, window=6.0, clock=lambda: now[0])  # 0.5 per second
    for _ in range(3):
        assert throttle.retry_after("a") == 0
        throttle.failed("a")
    assert throttle.retry_after("a") == 2  # one token back takes 2 s
    assert throttle.retry_after("b") == 0  # another address is not held up
    now[0] += 1.0
    assert throttle.retry_after("a") == 1
    now[0] += 1.0
    assert throttle.retry_after("a") == 0
    now[0] += 1000.0
    for _ in range(3):  # refilled to the burst, never beyond
        throttle.failed("a")
    assert throttle.retry_after("a") > 0


def test_memory_is_bounded_least_recent_forgotten_first() -> None:
    throttle = AuthThrottle(burst=1, window=10.0, max_tracked=2, clock=lambda: 0.0)
    for address in ("a", "b", "c"):
        throttle.failed(address)
    assert throttle.retry_after("a") == 0  # forgotten
    assert throttle.retry_after("b") > 0 and throttle.retry_after("c") > 0


def test_bearer_check_takes_any_value() -> None:
    keys = [b"k1", "ké".encode()]
    assert bearer_matches("Bearer k1", keys) and bearer_matches("Bearer ké", keys)
    for value in ("", "Bearer", "Bearer ", "bearer k1", "Basic k1", "Bearer k1 ",
                  "Bearer \udcff\udcfe", "Bearer " + "x" * 100_000):
        assert not bearer_matches(value, keys)


def test_refuse_spares_valid_keys_and_requests_without_one() -> None:
    throttle = AuthThrottle(burst=2, window=10.0, clock=lambda: 0.0)
    keys = [b"right"]
    assert throttle.refuse("Bearer wrong", keys, "a") == 0  # 401, one token spent
    assert throttle.refuse("Bearer wrong", keys, "a") == 0
    assert throttle.refuse("Bearer wrong", keys, "a") == 5  # 429: the bucket is empty
    assert throttle.refuse("Bearer right", keys, "a") is None  # a valid key passes anyway
    # no key at all is no guess: always a 401, not counted, even from a throttled address
    assert throttle.refuse("", keys, "a") == 0
    assert [throttle.refuse("", keys, "b") for _ in range(5)] == [0] * 5
    assert throttle.refuse("Bearer wrong", keys, "b") == 0
