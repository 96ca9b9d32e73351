"""The drain both HTTP servers share: once `drain()` is called `/readyz` answers 503 while
every other request is still served, each answer with `Connection: close`; `close(timeout)`
then stops listening while a request in progress still gets its answer. An application's
`FRONT` runs around its routing and handlers, and its own answers close while draining too."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from core.httpserver import FRONT, Handler, start_server
from tests.support.net import free_port


def _app(gate: asyncio.Event, entered: asyncio.Event) -> web.Application:
    async def ready(_r: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    async def work(_r: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def slow(_r: web.Request) -> web.Response:
        entered.set()
        await gate.wait()
        return web.json_response({"finished": True})

    app = web.Application()
    app.router.add_get("/readyz", ready)
    app.router.add_get("/work", work)
    app.router.add_get("/slow", slow)
    return app


async def test_drain_fails_readiness_and_closes_connections_but_serves() -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    port = free_port()
    runner = await start_server(_app(gate, entered), f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 200
                assert resp.headers.get("Connection") != "close"
            runner.drain()
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 503
                assert await resp.json() == {"status": "draining"}
                assert resp.headers["Connection"] == "close"
            async with http.get(f"{base}/work") as resp:
                assert resp.status == 200
                assert resp.headers["Connection"] == "close"
            async with http.get(f"{base}/nope") as resp:  # errors too
                assert resp.status == 404
                assert resp.headers["Connection"] == "close"
    finally:
        await runner.close(0)


async def test_close_stops_listening_and_lets_a_request_in_progress_finish() -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    port = free_port()
    runner = await start_server(_app(gate, entered), f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        slow = asyncio.create_task(http.get(f"{base}/slow"))
        await entered.wait()
        runner.drain()
        closing = asyncio.create_task(runner.close(60))
        async with aiohttp.ClientSession() as fresh:  # a new connection is refused ...
            while True:
                try:
                    async with fresh.get(f"{base}/work"):
                        pass
                except aiohttp.ClientConnectionError:
                    break
                await asyncio.sleep(0.01)
        assert not closing.done()
        gate.set()  # ... while the request in progress still gets its answer
        resp = await slow
        assert resp.status == 200
        assert await resp.json() == {"finished": True}
        assert resp.headers["Connection"] == "close"
        resp.release()
        await closing


async def test_a_front_runs_around_routing_and_its_own_answers_close_while_draining() -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    routing_errors: list[int] = []

    async def front(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.headers.get("X-Key") != "k":  # answered before any route is looked up
            return web.json_response({"error": "no key"}, status=401)
        try:
            return await handler(request)
        except web.HTTPException as exc:  # routing's 404 reaches the front
            routing_errors.append(exc.status)
            return web.json_response({"error": exc.reason}, status=exc.status)

    app = _app(gate, entered)
    app[FRONT] = front
    port = free_port()
    runner = await start_server(app, f"127.0.0.1:{port}")
    base = f"http://127.0.0.1:{port}"
    key = {"X-Key": "k"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/work", headers=key) as resp:
                assert resp.status == 200 and await resp.json() == {"ok": True}
            async with http.get(f"{base}/work") as resp:
                assert resp.status == 401 and await resp.json() == {"error": "no key"}
                assert resp.headers.get("Connection") != "close"
            async with http.get(f"{base}/nope", headers=key) as resp:
                assert resp.status == 404 and await resp.json() == {"error": "Not Found"}
            assert routing_errors == [404]
            runner.drain()
            async with http.get(f"{base}/work") as resp:
                assert resp.status == 401
                assert resp.headers["Connection"] == "close"
            async with http.get(f"{base}/readyz") as resp:
                assert resp.status == 503
                assert resp.headers["Connection"] == "close"
    finally:
        await runner.close(0)
