"""`service.delivery.wire.WebhookClient`, the dispatcher's HTTP client, against real servers on
loopback: keep-alive reuse, the SSRF guard at connect time (literals, names, rebinding, an
exempt socket's path on pooled connections), answers framed every way HTTP/1.1 allows, a
pooled connection the server closed, timeouts and garbage."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from service import DeliveryFailed, UnsafeTarget
from service.delivery.ssrf import Guard
from service.delivery.wire import BODY_KEPT, WebhookClient

OPEN = Guard(allow_private=True)
HEAD = b"webhook-id: msg_1\r\nwebhook-timestamp: 1\r\nwebhook-signature: v1,x\r\n"


@contextlib.asynccontextmanager
async def hooks(handler: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None,
                ) -> AsyncIterator[tuple[int, list[tuple[str, bytes, dict[str, str]]]]]:
    """An aiohttp server on 127.0.0.1 recording (peer port, body, headers) per request."""
    seen: list[tuple[str, bytes, dict[str, str]]] = []

    async def hook(request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.append((str(peer[1]) if peer else "", await request.read(), dict(request.headers)))
        if handler is not None:
            return await handler(request)
        return web.Response(text="ok", headers={"Retry-After": "3", "X-Other": "no"})

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1], seen
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_server(answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                      Awaitable[None]]) -> AsyncIterator[int]:
    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head + await reader.readexactly(length)


async def test_a_post_carries_the_body_and_headers_and_reuses_one_connection() -> None:
    async with hooks() as (port, seen), asyncio.timeout(30):
        client = WebhookClient(OPEN, 5)
        try:
            for n in range(20):
                answer = await client.post(f"http://127.0.0.1:{port}/hook?n={n}", HEAD,
                                           b'{"n":%d}' % n)
                assert answer.status == 200 and answer.body == "ok"
                # the kept ones only, spelled as sent
                assert set(answer.headers) == {"Retry-After", "Content-Type", "Server"}
                assert answer.headers["Retry-After"] == "3"
        finally:
            await client.close()
    assert [body for _, body, _ in seen] == [b'{"n":%d}' % n for n in range(20)]
    assert len({peer for peer, _, _ in seen}) == 1  # one keep-alive connection for all
    headers = seen[0][2]
    assert headers["Content-Type"] == "application/json"
    assert headers["webhook-id"] == "msg_1" and headers["webhook-signature"] == "v1,x"
    assert headers["Host"] == f"127.0.0.1:{port}"


async def test_concurrent_posts_each_get_their_own_connection_then_share_the_pool() -> None:
    async with hooks() as (port, seen), asyncio.timeout(30):
        client = WebhookClient(OPEN, 5)
        try:
            url = f"http://127.0.0.1:{port}/hook"
            for _ in range(3):
                answers = await asyncio.gather(*(client.post(url, HEAD, b"{}")
                                                 for _ in range(8)))
                assert {a.status for a in answers} == {200}
                assert 1 <= client.pooled <= 8
        finally:
            await client.close()
    assert len(seen) == 24 and len({peer for peer, _, _ in seen}) <= 8


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_loopback_is_refused_at_connect_time_unless_allowed(host: str) -> None:
    async with hooks() as (port, seen), asyncio.timeout(30):
        strict = WebhookClient(Guard(), 5)
        with pytest.raises(UnsafeTarget, match=r"127\.0\.0\.1 \(loopback\)"):
            await strict.post(f"http://{host}:{port}/hook", HEAD, b"{}")
        allowed = WebhookClient(Guard(allowed_networks=["127.0.0.0/8", "::1/128"]), 5)
        assert (await allowed.post(f"http://{host}:{port}/hook", HEAD, b"{}")).status == 200
        await strict.close()
        await allowed.close()
    assert len(seen) == 1


async def test_a_name_rebound_to_loopback_is_refused_and_safe_addresses_are_dialled() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        return {"evil.example": ["127.0.0.1"],
                "mixed.example": ["169.254.169.254", "10.0.0.1", "127.0.0.1"]}[host]

    async with hooks() as (port, seen), asyncio.timeout(30):
        client = WebhookClient(Guard(), 5, resolve=resolve)
        with pytest.raises(UnsafeTarget, match=r"evil\.example .*127\.0\.0\.1 \(loopback\)"):
            await client.post(f"http://evil.example:{port}/hook", HEAD, b"{}")
        await client.close()
        client = WebhookClient(Guard(allowed_networks=["127.0.0.0/8"]), 5, resolve=resolve)
        answer = await client.post(f"http://mixed.example:{port}/hook", HEAD, b"{}")
        await client.close()
    assert answer.status == 200
    assert [h["Host"] for _, _, h in seen] == [f"mixed.example:{port}"]


async def test_an_unresolvable_name_is_a_delivery_failure_not_a_refusal() -> None:
    async def resolve(host: str, port: int) -> list[str]:
        raise OSError(-2, "Name or service not known")

    client = WebhookClient(Guard(), 5, resolve=resolve)
    with pytest.raises(DeliveryFailed, match=r"cannot resolve nowhere\.example"):
        await client.post("http://nowhere.example/hook", HEAD, b"{}")


async def test_an_exempt_socket_takes_its_path_only_also_on_a_pooled_connection() -> None:
    async with hooks() as (port, seen), asyncio.timeout(30):
        client = WebhookClient(Guard(allowed_sockets=[("127.0.0.1", port, "/hook")]), 5)
        try:
            assert (await client.post(f"http://127.0.0.1:{port}/hook", HEAD, b"{}")).status \
                == 200
            for path in ("/api/v1/targets", "/hook/", "/Hook"):  # the pooled one is there
                with pytest.raises(UnsafeTarget, match="another path"):
                    await client.post(f"http://127.0.0.1:{port}{path}", HEAD, b"{}")
        finally:
            await client.close()
    assert len(seen) == 1


async def test_answers_framed_by_chunks_or_by_the_close_and_long_bodies_cut() -> None:
    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=503, headers={"Retry-After": "7"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"x" * (BODY_KEPT + 100))
        await resp.write_eof()
        return resp

    async with hooks(chunked) as (port, _), asyncio.timeout(30):
        client = WebhookClient(OPEN, 5)
        answer = await client.post(f"http://127.0.0.1:{port}/", HEAD, b"{}")
        await client.close()
    assert answer.status == 503 and answer.headers["Retry-After"] == "7"
    assert answer.body == "x" * BODY_KEPT

    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 202 Accepted\r\nConnection: close\r\n\r\nthanks")
        await writer.drain()
        writer.close()

    async with raw_server(until_close) as port, asyncio.timeout(30):
        client = WebhookClient(OPEN, 5)
        answer = await client.post(f"http://127.0.0.1:{port}/", HEAD, b"{}")
        await client.close()
    assert (answer.status, answer.body) == (202, "thanks")


async def test_a_pooled_connection_the_server_closed_is_replaced_once() -> None:
    connections = 0

    async def one_answer_each(reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        # keep-alive promised, then closed at once: the client's pooled connection is stale
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()

    async with raw_server(one_answer_each) as port, asyncio.timeout(30):
        client = WebhookClient(OPEN, 5)
        for _ in range(3):
            assert (await client.post(f"http://127.0.0.1:{port}/", HEAD, b"{}")).status == 200
            await asyncio.sleep(0)  # the close may or may not be seen before the next post
        await client.close()
    assert connections == 3


@pytest.mark.parametrize(("answer", "error"), [
    (b"", "connection closed without an answer"),
    (b"HTTP/1.1 200 OK\r\nContent-Le", "in the middle of the answer head"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", "before the end of the answer"),
    (b"SMTP ready\r\n\r\n", "not a valid HTTP/1.x answer"),
])
async def test_broken_answers_are_delivery_failures(answer: bytes, error: str) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with raw_server(broken) as port, asyncio.timeout(30):
        client = WebhookClient(OPEN, 5)
        with pytest.raises(DeliveryFailed, match=error):
            await client.post(f"http://127.0.0.1:{port}/", HEAD, b"{}")
        await client.close()


async def test_no_answer_in_time_is_a_timeout_and_the_connection_is_dropped() -> None:
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await release.wait()
        writer.close()

    async with raw_server(silent) as port, asyncio.timeout(30):
        client = WebhookClient(OPEN, 0.3)
        with pytest.raises(TimeoutError):
            await client.post(f"http://127.0.0.1:{port}/", HEAD, b"{}")
        assert client.pooled == 0  # nothing half-read is kept
        release.set()
        await client.close()


async def test_a_refused_connection_names_the_address() -> None:
    async with raw_server(lambda r, w: asyncio.sleep(0)) as port:
        pass  # the port is free again: nothing listens there now
    client = WebhookClient(OPEN, 5)
    with pytest.raises(DeliveryFailed, match=f"connection refused by 127.0.0.1:{port}"):
        await client.post(f"http://127.0.0.1:{port}/", HEAD, b"{}")
