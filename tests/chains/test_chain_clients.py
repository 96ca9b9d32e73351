"""chains/ on the wire: the transport against fake servers (errors, batches, credentials,
every failure kind) and the clients against ganache and documented answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chains import ChainError, MalformedResponse, RpcError, TransportError
from chains.bitcoin import BitcoinClient
from chains.eos import EosClient
from chains.ethereum import EthereumClient
from chains.jsonrpc import BatchUnsupported, JsonRpcTransport, NotHttp
from tests.support import chain_nodes
from tests.support.chain_nodes import (
    HANG,
    FakeNode,
    GanacheNode,
    Seen,
    json_answer,
    load_fixture,
    text_answer,
)
from tests.support.net import free_port
from tests.support.node_samples import BitcoinCoreFake

# --- the transport -------------------------------------------------------------------------


def transport(session: aiohttp.ClientSession, url: str, timeout: float = 2.0,
              **kwargs: Any) -> JsonRpcTransport:
    return JsonRpcTransport(session, url, timeout, **kwargs)


async def echo_results(seen: Seen) -> Any:
    """Answers each call with its method name, a batch in reverse order."""
    def one(call: dict[str, Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": call["id"], "result": call["method"]}
    if isinstance(seen.body, list):
        return json_answer([one(c) for c in reversed(seen.body)])
    return json_answer(one(seen.body))


async def test_call_and_batch_in_request_order(fake_node: FakeNode,
                                               rpc_session: aiohttp.ClientSession) -> None:
    fake_node.answer("/", echo_results)
    rpc = transport(rpc_session, fake_node.url)
    assert await rpc.call("eth_chainId") == "eth_chainId"
    replies = await rpc.batch([("a", []), ("b", [1]), ("c", {"x": 1})])
    assert [r.value() for r in replies] == ["a", "b", "c"]
    sent = fake_node.requests[-1].body
    assert [c["params"] for c in sent] == [[], [1], {"x": 1}]
    assert fake_node.requests[0].headers["Content-Type"] == "application/json"


async def test_rpc_error_object(fake_node: FakeNode, rpc_session: aiohttp.ClientSession) -> None:
    fake_node.answer("/", json_answer({"jsonrpc": "2.0", "id": 1,
                                  "error": {"code": -32000, "message": "header not found"}}))
    with pytest.raises(RpcError) as caught:
        await transport(rpc_session, fake_node.url).call("eth_blockNumber")
    assert (caught.value.code, caught.value.message) == (-32000, "header not found")
    assert str(caught.value) == "eth_blockNumber: RPC error -32000: header not found"


async def test_batch_answered_by_one_error_object(fake_node: FakeNode,
                                                  rpc_session: aiohttp.ClientSession) -> None:
    fake_node.answer("/", json_answer({"jsonrpc": "2.0", "id": None,
                                  "error": {"code": -32600, "message": "batch not allowed"}}))
    with pytest.raises(BatchUnsupported) as caught:
        await transport(rpc_session, fake_node.url).batch([("a", []), ("b", [])])
    assert caught.value.code == -32600


async def test_batch_missing_an_answer(fake_node: FakeNode,
                                       rpc_session: aiohttp.ClientSession) -> None:
    fake_node.answer("/", json_answer([{"jsonrpc": "2.0", "id": 1, "result": "0x1"}]))
    with pytest.raises(MalformedResponse, match=r"^b: no answer with id 2"):
        await transport(rpc_session, fake_node.url).batch([("a", []), ("b", [])])


async def test_garbage_is_malformed_and_shortened(fake_node: FakeNode,
                                                  rpc_session: aiohttp.ClientSession) -> None:
    fake_node.answer("/", text_answer("<html><body>" + "x" * 10_000 + "</body></html>"))
    with pytest.raises(MalformedResponse, match=r"^eth_chainId: answer is not JSON: '<html>"
                       ) as caught:
        await transport(rpc_session, fake_node.url).call("eth_chainId")
    assert len(str(caught.value)) < 120


async def test_wrong_shapes_are_malformed(fake_node: FakeNode,
                                          rpc_session: aiohttp.ClientSession) -> None:
    rpc = transport(rpc_session, fake_node.url)
    for body, message in [([1], "not an object"), ({"id": 1}, "neither result nor error"),
                          ({"id": 1, "error": "boom"}, "error is not an object")]:
        fake_node.answer("/", json_answer(body))
        with pytest.raises(MalformedResponse, match=message):
            await rpc.call("m")


async def test_http_status_without_json_error(fake_node: FakeNode,
                                              rpc_session: aiohttp.ClientSession) -> None:
    fake_node.answer("/", text_answer("<h1>502 Bad Gateway</h1>", status=502))
    with pytest.raises(TransportError, match="HTTP 502") as caught:
        await transport(rpc_session, fake_node.url).call("eth_chainId")
    assert caught.value.kind == "http_status"


async def test_url_credentials_are_sent_and_never_shown(
        fake_node: FakeNode, rpc_session: aiohttp.ClientSession) -> None:
    fake = BitcoinCoreFake(user="alice", password="s3cret-pw")
    fake_node.answer("/", fake)
    host = fake_node.url.removeprefix("http://")
    rpc = transport(rpc_session, f"http://alice:s3cret-pw@{host}/?key=hidden", version="1.0")
    assert (await rpc.call("getnetworkinfo"))["connections"] == 10
    assert fake_node.requests[-1].headers["Authorization"] == fake.expected_auth()
    wrong = transport(rpc_session, f"http://alice:not-it@{host}/?key=hidden")
    with pytest.raises(TransportError, match=r"HTTP 401 .credentials refused") as caught:
        await wrong.call("getnetworkinfo")
    assert "not-it" not in str(caught.value) and "hidden" not in str(caught.value)
    closed = transport(rpc_session, f"http://alice:s3cret-pw@127.0.0.1:{free_port()}/")
    with pytest.raises(TransportError) as refused:
        await closed.call("getnetworkinfo")
    assert refused.value.kind == "refused" and "s3cret" not in str(refused.value)


async def test_bitcoin_errors_come_with_http_500(fake_node: FakeNode,
                                                 rpc_session: aiohttp.ClientSession) -> None:
    fake = BitcoinCoreFake(error=(-28, "Loading block index…"))
    fake_node.answer("/", fake)
    client = BitcoinClient(rpc_session, fake_node.url, 2.0, user=fake.user, password=fake.password)
    with pytest.raises(RpcError) as caught:
        await client.blockchain_info()
    assert caught.value.code == -28
    fake.error = None
    fake.initial_block_download, fake.blocks, fake.headers = True, 100, 900
    info = await client.blockchain_info()
    assert (info.initial_block_download, info.lag) == (True, 800)
    sent = fake_node.requests[-1].body
    assert (sent["jsonrpc"], sent["method"], sent["params"]) == ("1.0", "getblockchaininfo", [])


async def test_eos_posts_an_empty_body_to_get_info(fake_node: FakeNode,
                                                   rpc_session: aiohttp.ClientSession) -> None:
    fake_node.answer("/v1/chain/get_info", json_answer(load_fixture("eos_get_info_local.json")))
    info = await EosClient(rpc_session, fake_node.url + "/", 2.0).get_info()
    assert info.head_block_num == 134
    seen = fake_node.requests[-1]
    assert seen.path == "/v1/chain/get_info" and seen.body is None


@pytest.mark.parametrize(("url", "kind"), [
    ("http://127.0.0.1:{closed}", "refused"), ("http://no-such-node.invalid", "dns"),
    ("https://{fake}", "tls")])
async def test_transport_kinds(url: str, kind: str, fake_node: FakeNode,
                               rpc_session: aiohttp.ClientSession) -> None:
    url = url.format(closed=free_port(), fake=fake_node.url.removeprefix("http://"))
    with pytest.raises(TransportError) as caught:
        await transport(rpc_session, url).call("eth_chainId")
    assert caught.value.kind == kind
    assert str(caught.value).startswith("eth_chainId: ")
    assert isinstance(caught.value.__cause__, Exception)


async def test_hanging_node_times_out(fake_node: FakeNode,
                                      rpc_session: aiohttp.ClientSession) -> None:
    fake_node.answer("/", HANG)
    with pytest.raises(TransportError) as caught:
        await asyncio.wait_for(transport(rpc_session, fake_node.url, 0.3).call("eth_chainId"), 5)
    assert caught.value.kind == "timeout"


async def test_not_http_at_all(rpc_session: aiohttp.ClientSession) -> None:
    async def ssh_banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(ssh_banner, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(NotHttp, match="not an HTTP answer") as caught:
            await transport(rpc_session, f"http://127.0.0.1:{port}").call("eth_chainId")
    assert caught.value.kind == "connect"


# --- ethereum against ganache ----------------------------------------------------------------


async def test_ethereum_client_on_ganache(ganache: GanacheNode,
                                          rpc_session: aiohttp.ClientSession) -> None:
    client = EthereumClient(rpc_session, ganache.url, 5.0)
    head = await ganache.mine(2)
    health = await client.health()
    assert (health.head, health.chain_id, health.syncing, health.peers) == (head, 1337, False, 0)
    assert health.latest.number == head
    genesis, parent, beyond = await client.get_blocks([0, head - 1, head + 1000])
    assert genesis is not None and genesis.parent_hash == "0x" + "00" * 32
    assert parent is not None and health.latest.parent_hash == parent.hash
    assert beyond is None
    assert await client.peer_count() == 0 and await client.syncing() is False


def test_missing_ganache_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain_nodes, "GANACHE", tmp_path / "ganache")
    with pytest.raises(pytest.fail.Exception, match="ganache is not installed"):
        chain_nodes.GanacheFactory(tmp_path).start()


def test_errors_share_one_tree() -> None:
    assert issubclass(BatchUnsupported, RpcError) and issubclass(NotHttp, TransportError)
    assert all(issubclass(e, ChainError) for e in (RpcError, TransportError, MalformedResponse))
