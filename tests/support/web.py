"""Real local servers for the http and tcp probe tests: an aiohttp app, a raw asyncio server
answering hand-written bytes, one that accepts and never answers, and TLS servers whose
certificates come from a throwaway trustme CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import trustme
from aiohttp import web

from probes.base import ProbeContext, ProbeResult
from probes.http import HttpOptions, HttpProbe

JSON_DOC = {
    "status": "ok",
    "result": {"height": 142, "syncing": False, "items": [{"name": "a"}, {"name": "b"}]},
}
CHUNKS = (b"alpha-", b"beta-", b"gamma")
TLS_DAYS_LEFT = 5.0

# The raw server's answer by request path, and whether it closes the connection after it.
RAW: dict[str, tuple[bytes, bool]] = {
    "/garbage": (b"SSH-2.0-OpenSSH_9.6\r\n", False),
    "/bad-status": (b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n", True),
    "/bad-header": (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", True),
    "/bad-length": (b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello", True),
    "/bad-chunk": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhi\r\n0\r\n\r\n",
                   True),
    "/close-delimited": (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nread until close",
                         True),
    "/truncated": (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", True),
    "/empty": (b"", True),
    "/interim": (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                 True),
    # no body may follow these, whatever the headers say: the connection stays open
    "/no-content": (b"HTTP/1.1 204 No Content\r\n\r\n", False),
    "/head-open": (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", False),
    # a chunked JSON body sent one byte per write: every parser state sees a split
    "/dribble": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b'9;ext=1\r\n{"a": [1,\r\n3\r\n 2]\r\n1\r\n}\r\n0\r\nX-Trailer: t\r\n\r\n',
                 True),
}


@dataclass(frozen=True)
class TlsServer:
    url: str  # https://127.0.0.1:PORT (the certificate names 127.0.0.1 and localhost)
    ca_file: str
    not_after: datetime


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def probe(ctx: ProbeContext, url: str, timeout: float = 5.0,
                **options: Any) -> ProbeResult:
    """One run of an http probe built from keyword options."""
    return await HttpProbe(url, timeout, HttpOptions(**options), ctx).run()


def _app() -> web.Application:
    async def ok(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def json_doc(_: web.Request) -> web.Response:
        return web.json_response(JSON_DOC)

    async def not_json(_: web.Request) -> web.Response:
        return web.Response(text="<html>not json</html>")

    async def status(request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"status {code}")

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)  # no Content-Length: aiohttp sends chunks
        for piece in CHUNKS:
            await response.write(piece)
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(float(request.query.get("head", "0")))
        response = web.StreamResponse()
        response.content_length = 10
        await response.prepare(request)
        await response.write(b"01234")
        await asyncio.sleep(float(request.query.get("body", "0")))
        await response.write(b"56789")
        await response.write_eof()
        return response

    async def redirect(request: web.Request) -> web.Response:
        code = int(request.query.get("status", "302"))
        return web.Response(status=code, headers={"Location": request.query["to"]})

    async def hops(request: web.Request) -> web.Response:
        left = int(request.match_info["n"])
        if left == 0:
            return web.Response(text="arrived")
        return web.Response(status=302, headers={"Location": str(left - 1)})  # relative

    async def loop(_: web.Request) -> web.Response:
        return web.Response(status=301, headers={"Location": "/loop"})

    async def echo(request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        return web.json_response({"method": request.method, "body": body,
                                  "headers": dict(request.headers)})

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.query["size"]))

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/json", json_doc)
    app.router.add_get("/not-json", not_json)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/slow", slow)
    app.router.add_get("/redirect", redirect)
    app.router.add_post("/redirect", redirect)
    app.router.add_get("/hops/{n}", hops)
    app.router.add_get("/loop", loop)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/big", big)
    return app


@contextlib.asynccontextmanager
async def serve(app: web.Application, tls: ssl.SSLContext | None = None,
                port: int = 0) -> AsyncIterator[str]:
    """`app` on loopback (a free port unless given), without access log; yields its base
    URL."""
    # a short shutdown: slow handlers (timed-out probes, delayed sinks) must not hold it up
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls)
    await site.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def serve_app(tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """The test target app (every route above) on a free port; yields its base URL."""
    async with serve(_app(), tls) as base:
        yield base


@contextlib.asynccontextmanager
async def serve_raw() -> AsyncIterator[str]:
    """Answers each request with the bytes RAW holds for its path; yields the base URL."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            answer, close = RAW[path]
            if path == "/dribble":
                for i in range(len(answer)):
                    writer.write(answer[i: i + 1])
                    await writer.drain()
                    await asyncio.sleep(0.001)
            else:
                writer.write(answer)
            if not close:
                await reader.read()  # until the client gives up
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    for sock in server.sockets:  # small writes go out alone, so the client sees them split
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@contextlib.asynccontextmanager
async def serve_silent() -> AsyncIterator[str]:
    """Accepts connections and never says a word; yields host:port."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    async with server:
        yield f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


def tls_pair(tmp: Path, days_left: float,
             names: tuple[str, ...] = ("localhost", "127.0.0.1"),
             ) -> tuple[ssl.SSLContext, str, datetime]:
    """A server context for `names` from a fresh CA, the CA file, and the notAfter."""
    ca = trustme.CA()
    now = datetime.now(UTC).replace(microsecond=0)
    not_after = now + timedelta(days=days_left)
    leaf = ca.issue_cert(*names, not_before=now - timedelta(days=30), not_after=not_after)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(server)
    ca_file = tmp / f"ca-{days_left:g}-{names[0]}.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return server, str(ca_file), not_after


@pytest_asyncio.fixture
async def web_ctx() -> AsyncIterator[ProbeContext]:
    """A probe context; the http and tcp probes make their own connections."""
    async with aiohttp.ClientSession() as session:
        yield ProbeContext(session)


@pytest_asyncio.fixture
async def web_url() -> AsyncIterator[str]:
    async with serve_app() as url:
        yield url


@pytest_asyncio.fixture
async def raw_url() -> AsyncIterator[str]:
    async with serve_raw() as url:
        yield url


@pytest_asyncio.fixture
async def silent_addr() -> AsyncIterator[str]:
    async with serve_silent() as addr:
        yield addr


@pytest_asyncio.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[TlsServer]:
    """Its certificate expires TLS_DAYS_LEFT days from now: inside the default warning."""
    context, ca_file, not_after = tls_pair(tmp_path, TLS_DAYS_LEFT)
    async with serve_app(context) as url:
        yield TlsServer(url, ca_file, not_after)


@pytest_asyncio.fixture
async def expired_tls_server(tmp_path: Path) -> AsyncIterator[TlsServer]:
    context, ca_file, not_after = tls_pair(tmp_path, -2.0)
    async with serve_app(context) as url:
        yield TlsServer(url, ca_file, not_after)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nothing listens on (bound and released: the kernel will refuse it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    yield port
