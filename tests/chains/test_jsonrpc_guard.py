"""Issue 13, items 3 and 4: the transport matches every answer to its request id, reads a rate
limit as RateLimited (never as a refused batch), tries batches again after a refusal, and cuts
off an answer larger than its limit while reading it. Real aiohttp servers on free ports."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from chains import MalformedResponse, RateLimited, RpcError, TransportError
from chains.bitcoin import BitcoinClient
from chains.eos import EosClient
from chains.ethereum import BATCH_RETRY, EthereumClient
from chains.jsonrpc import DEFAULT_MAX_RESPONSE_BYTES, JsonRpcTransport, retry_after
from chains.xrpl import XrplClient
from tests.support.net import free_port

MB = 1024 * 1024
STREAM_TOTAL = 50 * MB
STREAM_CHUNK = 64 * 1024

Answer = Callable[[web.Request, Any], Awaitable[web.StreamResponse]]


@dataclass
class Node:
    """A JSON-RPC node whose answer the test sets per path, recording what it was sent."""

    url: str = ""
    answers: dict[str, Answer] = field(default_factory=dict)
    bodies: list[Any] = field(default_factory=list)
    peers: list[Any] = field(default_factory=list)
    streamed: int = 0  # body bytes /stream managed to write before its write failed
    stream_done: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.bodies.append(body)
        self.peers.append(request.transport.get_extra_info("peername")
                          if request.transport else None)
        return await self.answers[request.path](request, body)


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    fake = Node()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fake.url = f"http://127.0.0.1:{port}"
    yield fake
    fake.release.set()
    await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def reply(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(obj).encode(), status=status,
                        content_type="application/json", headers=headers)


def result_for(call: dict[str, Any], value: Any = None, request_id: Any = None) -> Any:
    return {"jsonrpc": "2.0", "id": call["id"] if request_id is None else request_id,
            "result": value}


async def nulls(request: web.Request, body: Any) -> web.StreamResponse:
    """A node that takes batches and has none of the blocks asked for."""
    if isinstance(body, list):
        return reply([result_for(c) for c in body])
    return reply(result_for(body))


async def refuses_batches(request: web.Request, body: Any) -> web.StreamResponse:
    if isinstance(body, list):
        return reply({"jsonrpc": "2.0", "id": None,
                      "error": {"code": -32600, "message": "batch requests are not supported"}})
    return reply(result_for(body))


def rate_limited(status: int, headers: dict[str, str] | None = None,
                 error: dict[str, Any] | None = None, html: bool = False) -> Answer:
    async def answer(request: web.Request, body: Any) -> web.StreamResponse:
        if html:
            return web.Response(text="<h1>429 Too Many Requests</h1>", status=status,
                                content_type="text/html", headers=headers)
        return reply({"jsonrpc": "2.0", "id": None,
                      "error": error or {"code": -32005, "message": "limit exceeded"}},
                     status, headers)
    return answer


# --- ids -------------------------------------------------------------------------------------


async def test_a_stale_answer_is_refused_and_a_string_id_accepted(
        node: Node, session: aiohttp.ClientSession) -> None:
    previous: list[Any] = []

    async def stale(request: web.Request, body: Any) -> web.StreamResponse:
        # answers each call with the id and result of the call before it, as a confused
        # proxy or a pool replaying a cached answer does
        answer = result_for(body, [], request_id=previous[-1]) if previous else result_for(
            body, ["first"])
        previous.append(body["id"])
        return reply(answer)

    async def as_string(request: web.Request, body: Any) -> web.StreamResponse:
        return reply(result_for(body, "0x7", request_id=str(body["id"])))

    node.answers.update({"/stale": stale, "/string": as_string})
    rpc = JsonRpcTransport(session, node.url + "/stale", 2.0)
    assert await rpc.call("eth_getLogs", [{}]) == ["first"]
    with pytest.raises(MalformedResponse) as caught:
        await rpc.call("eth_getLogs", [{}])
    assert str(caught.value) == ("eth_getLogs: answer has id 1, the request had id 2 "
                                 "(a stale or misrouted answer)")
    echoed = JsonRpcTransport(session, node.url + "/string", 2.0)
    for _ in range(8):  # ids 1..8 come back as "1".."8"
        assert await echoed.call("eth_blockNumber") == "0x7"
    assert node.bodies[-1]["id"] == 8


async def test_error_objects_with_a_null_id_are_still_errors(
        node: Node, session: aiohttp.ClientSession) -> None:
    async def parse_error(request: web.Request, body: Any) -> web.StreamResponse:
        return reply({"jsonrpc": "2.0", "id": None,
                      "error": {"code": -32700, "message": "parse error"}})

    node.answers["/"] = parse_error
    with pytest.raises(RpcError) as caught:
        await JsonRpcTransport(session, node.url, 2.0).call("eth_chainId")
    assert caught.value.code == -32700

    async def other_id_error(request: web.Request, body: Any) -> web.StreamResponse:
        return reply({"jsonrpc": "2.0", "id": 99,
                      "error": {"code": -32000, "message": "header not found"}})

    node.answers["/"] = other_id_error
    with pytest.raises(MalformedResponse, match="answer has id 99, the request had id 1"):
        await JsonRpcTransport(session, node.url, 2.0).call("eth_chainId")


# --- rate limits -----------------------------------------------------------------------------


async def test_a_rate_limited_batch_is_not_a_refused_batch(
        node: Node, session: aiohttp.ClientSession) -> None:
    node.answers["/"] = rate_limited(429, {"Retry-After": "7"})
    client = EthereumClient(session, node.url, 2.0)
    with pytest.raises(RateLimited) as caught:
        await client.get_blocks([1, 2, 3])
    assert (caught.value.kind, caught.value.retry_after) == ("rate_limited", 7.0)
    assert isinstance(caught.value, TransportError)
    assert str(caught.value).startswith("eth_getBlockByNumber and 2 more (batch): HTTP 429")
    assert len(node.bodies) == 1  # no call-by-call retry hammering a rate-limited node
    node.answers["/"] = nulls
    assert await client.get_blocks([1, 2, 3]) == [None, None, None]
    assert isinstance(node.bodies[-1], list) and len(node.bodies) == 2  # batched again


@pytest.mark.parametrize(("answer", "after"), [
    (rate_limited(429, html=True), None),
    (rate_limited(429, {"Retry-After": "999"}, html=True), 300.0),
    (rate_limited(429, {"Retry-After": "-3"}), 0.0),
    (rate_limited(429, {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}), None),
    (rate_limited(200), None),
    (rate_limited(503), None),
    (rate_limited(200, error={"code": -32000, "message": "Too Many Requests, slow down"}), None),
    (rate_limited(200, error={"code": -32603, "message": "daily rate limit reached"}), None),
])
async def test_rate_limits_of_every_shape(answer: Answer, after: float | None, node: Node,
                                          session: aiohttp.ClientSession) -> None:
    node.answers["/"] = answer
    rpc = JsonRpcTransport(session, node.url, 2.0)
    for attempt in (rpc.call("eth_blockNumber"), rpc.batch([("eth_blockNumber", []),
                                                            ("eth_chainId", [])])):
        with pytest.raises(RateLimited) as caught:
            await attempt
        assert (caught.value.kind, caught.value.retry_after) == ("rate_limited", after)


async def test_a_rate_limit_inside_a_batch_answer(node: Node,
                                                  session: aiohttp.ClientSession) -> None:
    async def second_limited(request: web.Request, body: Any) -> web.StreamResponse:
        first, second = body
        return reply([result_for(first, "0x1"),
                      {"jsonrpc": "2.0", "id": second["id"],
                       "error": {"code": -32005, "message": "request rate exceeded"}}])

    node.answers["/"] = second_limited
    with pytest.raises(RateLimited, match=r"^eth_blockNumber and 1 more \(batch\): rate limited"):
        await JsonRpcTransport(session, node.url, 2.0).batch([("eth_blockNumber", []),
                                                              ("eth_chainId", [])])


def test_retry_after_is_seconds_within_bounds() -> None:
    assert [retry_after(v) for v in (None, "5", " 1.5 ", "0", "-1", "301", "nan", "inf",
                                     "soon")] == [None, 5.0, 1.5, 0.0, 0.0, 300.0, None, None,
                                                  None]


async def test_a_refused_batch_is_tried_again_later(node: Node,
                                                    session: aiohttp.ClientSession) -> None:
    now = [1000.0]
    node.answers["/"] = refuses_batches
    client = EthereumClient(session, node.url, 2.0, monotonic=lambda: now[0])
    assert await client.get_blocks([1, 2]) == [None, None]
    assert [type(b) for b in node.bodies] == [list, dict, dict]  # refused, then one by one
    node.answers["/"] = nulls  # the node takes batches again, but we do not ask yet
    now[0] += BATCH_RETRY - 1
    assert await client.get_blocks([1, 2]) == [None, None]
    assert [type(b) for b in node.bodies[3:]] == [dict, dict]
    now[0] += 1
    assert await client.get_blocks([1, 2]) == [None, None]
    now[0] += 1
    assert await client.get_blocks([1, 2]) == [None, None]
    assert [type(b) for b in node.bodies[5:]] == [list, list]  # batches, and they stay on


# --- answer size -----------------------------------------------------------------------------


async def test_a_declared_length_over_the_limit_is_refused_unread(
        node: Node, session: aiohttp.ClientSession) -> None:
    async def hang(request: web.Request, body: Any) -> web.StreamResponse:
        """Headers that promise more than the limit, then nothing: a client that tried to
        read the body would wait for its timeout."""
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = DEFAULT_MAX_RESPONSE_BYTES + 1
        await resp.prepare(request)
        await node.release.wait()  # the body never comes
        return resp

    node.answers["/rpc/v3/KEY"] = hang
    host = node.url.removeprefix("http://")
    rpc = JsonRpcTransport(session, f"http://user:s3cret@{host}/rpc/v3/KEY?token=hidden", 30.0)
    calls: list[tuple[str, Any]] = [("eth_getBlockByNumber", [hex(n), True]) for n in range(50)]
    with pytest.raises(TransportError) as caught:
        await asyncio.wait_for(rpc.batch(calls), 10)  # no read: refused at once, not timed out
    assert caught.value.kind == "too_large"
    assert str(caught.value) == ("eth_getBlockByNumber and 49 more (batch): answer larger than "
                                 f"16777216 bytes from {host}")


async def test_an_endless_stream_is_cut_off_while_read(node: Node,
                                                       session: aiohttp.ClientSession) -> None:
    async def stream(request: web.Request, body: Any) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        chunk = b" " * STREAM_CHUNK
        try:
            while node.streamed < STREAM_TOTAL:
                await resp.write(chunk)
                node.streamed += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up: what was written so far is the count
        finally:
            node.stream_done.set()
        return resp

    node.answers["/"] = stream
    rpc = JsonRpcTransport(session, node.url, 30.0, max_response_bytes=MB)
    with pytest.raises(TransportError) as caught:
        await asyncio.wait_for(rpc.call("eth_getBlockByNumber", ["latest", True]), 20)
    assert caught.value.kind == "too_large"
    assert "answer larger than 1048576 bytes" in str(caught.value)
    await asyncio.wait_for(node.stream_done.wait(), 20)
    # the client read about 1 MB and dropped the connection; what the server got out beyond
    # that sat in socket buffers. Read to the end, all 50 MB would have been written.
    assert node.streamed < STREAM_TOTAL // 3, node.streamed


async def test_answers_within_the_limit_are_read_whole(node: Node,
                                                       session: aiohttp.ClientSession) -> None:
    big = "0x" + "ab" * (MB // 4)  # a result of half a megabyte

    async def chunked(request: web.Request, body: Any) -> web.StreamResponse:
        data = json.dumps(result_for(body, big)).encode()
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(data), 10_000):
            await resp.write(data[i:i + 10_000])
        await resp.write_eof()
        return resp

    async def plain(request: web.Request, body: Any) -> web.StreamResponse:
        return reply(result_for(body, big))

    node.answers.update({"/chunked": chunked, "/plain": plain})
    for path in ("/chunked", "/plain"):
        rpc = JsonRpcTransport(session, node.url + path, 5.0, max_response_bytes=MB)
        assert await rpc.call("eth_getCode", ["0x0", "latest"]) == big
        assert await rpc.call("eth_getCode", ["0x0", "latest"]) == big
    # answers read to their end leave the connection reusable
    assert node.peers[0] == node.peers[1] and node.peers[2] == node.peers[3]


async def test_a_compressed_answer_counts_what_it_inflates_to(
        node: Node, session: aiohttp.ClientSession) -> None:
    async def bomb(request: web.Request, body: Any) -> web.StreamResponse:
        # 4 MB of JSON in a few kilobytes: its Content-Length says nothing about its size
        data = json.dumps(result_for(body, "0x" + "0" * (4 * MB))).encode()
        return web.Response(body=gzip.compress(data), content_type="application/json",
                            headers={"Content-Encoding": "gzip"})

    node.answers["/"] = bomb
    rpc = JsonRpcTransport(session, node.url, 5.0, max_response_bytes=MB)
    with pytest.raises(TransportError) as caught:
        await rpc.call("eth_getBlockByNumber", ["latest", True])
    assert caught.value.kind == "too_large"
    roomy = JsonRpcTransport(session, node.url, 5.0, max_response_bytes=8 * MB)
    assert len(await roomy.call("eth_getBlockByNumber", ["latest", True])) == 4 * MB + 2


@pytest.mark.parametrize("client", ["ethereum", "eos", "xrpl", "bitcoin"])
async def test_every_chain_client_passes_its_limit_on(client: str,
                                                      session: aiohttp.ClientSession) -> None:
    kinds: dict[str, Any] = {"ethereum": EthereumClient, "eos": EosClient, "xrpl": XrplClient,
                             "bitcoin": BitcoinClient}
    built = kinds[client](session, "http://127.0.0.1:1", 1.0, max_response_bytes=12345)
    assert built.transport.max_response_bytes == 12345
    default = kinds[client](session, "http://127.0.0.1:1", 1.0)
    assert default.transport.max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES == 16 * MB
