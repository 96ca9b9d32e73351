"""Ethereum/EVM execution-node client: typed answers to the few eth_* calls we rely on.

Each RPC method is one `_ask(method, params, parser)` line and each answer shape one parser
function, so a chain follower adds eth_getLogs as a `Log` model, a parser and a method.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from chains import MalformedResponse, RpcError
from chains.jsonrpc import BatchUnsupported, JsonRpcTransport, Params, Reply, shown

T = TypeVar("T")
BlockRef = int | str  # a number, or a tag: "latest", "safe", "finalized", "earliest"
_HEX = frozenset(string.hexdigits)
# -32601 is JSON-RPC's "method not found", -32004 EIP-1474's "method not supported": providers
# that hide their peers answer net_peerCount with either
PEERS_UNKNOWN_CODES = frozenset({-32601, -32004})


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """eth_syncing's object while the node catches up; fields some clients omit are None."""

    starting_block: int | None
    current_block: int | None
    highest_block: int | None


@dataclass(frozen=True, slots=True)
class Block:
    number: int
    hash: str
    parent_hash: str
    timestamp: int  # unix seconds
    transactions: tuple[str | Mapping[str, Any], ...]  # hashes, or objects when full


@dataclass(frozen=True, slots=True)
class NodeHealth:
    head: int
    syncing: SyncStatus | bool  # False when synced; True from nodes that give no detail
    peers: int | None  # None: the node or provider does not say
    chain_id: int
    latest: Block


def quantity(value: object, what: str) -> int:
    """A JSON-RPC QUANTITY: "0x" then hex digits. Anything looser hides a broken node."""
    if (not isinstance(value, str) or not value.startswith("0x") or len(value) < 3
            or not _HEX.issuperset(value[2:])):
        raise MalformedResponse(f"{what}: expected a 0x-prefixed hex quantity, got "
                                f"{shown(value)}")
    return int(value, 16)


def uint64(value: object, what: str) -> int:
    """A header field the protocol stores as 64 bits (number, timestamp)."""
    number = quantity(value, what)
    if number >= 1 << 64:
        raise MalformedResponse(f"{what}: {shown(value)} does not fit in 64 bits")
    return number


def data32(value: object, what: str) -> str:
    """A 32-byte hash, lower-cased so comparisons with stored hashes do not depend on case."""
    if (not isinstance(value, str) or not value.startswith("0x") or len(value) != 66
            or not _HEX.issuperset(value[2:])):
        raise MalformedResponse(f"{what}: expected a 32-byte 0x hash, got {shown(value)}")
    return value.lower()


def parse_syncing(value: object, what: str) -> SyncStatus | bool:
    if isinstance(value, bool):
        return value
    if not isinstance(value, Mapping):
        raise MalformedResponse(f"{what}: expected false or an object, got {shown(value)}")

    def opt(key: str) -> int | None:
        return quantity(value[key], f"{what}.{key}") if value.get(key) is not None else None

    return SyncStatus(opt("startingBlock"), opt("currentBlock"), opt("highestBlock"))


def parse_block(value: object, what: str) -> Block | None:
    if value is None:
        return None  # the block does not exist (yet)
    if not isinstance(value, Mapping):
        raise MalformedResponse(f"{what}: expected a block object, got {shown(value)}")
    txs = value.get("transactions", [])
    if not isinstance(txs, list) or not all(isinstance(t, str | Mapping) for t in txs):
        raise MalformedResponse(f"{what}.transactions: expected a list of hashes or objects")
    return Block(
        number=uint64(value.get("number"), f"{what}.number"),
        hash=data32(value.get("hash"), f"{what}.hash"),
        parent_hash=data32(value.get("parentHash"), f"{what}.parentHash"),
        timestamp=uint64(value.get("timestamp"), f"{what}.timestamp"),
        transactions=tuple(txs),
    )


def block_param(ref: BlockRef) -> str:
    return hex(ref) if isinstance(ref, int) else ref


class EthereumClient:
    """Typed eth_* calls over one node URL; `health()` is one round trip when batches work."""

    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float, *,
                 auth: tuple[str, str] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        self.transport = JsonRpcTransport(session, url, timeout, auth=auth, headers=headers)
        self._batches = True  # cleared once the node refuses one, to save a round trip

    async def _ask(self, method: str, params: Params, parse: Callable[[object, str], T]) -> T:
        return parse(await self.transport.call(method, params), method)

    async def block_number(self) -> int:
        return await self._ask("eth_blockNumber", [], quantity)

    async def syncing(self) -> SyncStatus | bool:
        return await self._ask("eth_syncing", [], parse_syncing)

    async def peer_count(self) -> int:
        return await self._ask("net_peerCount", [], quantity)

    async def chain_id(self) -> int:
        return await self._ask("eth_chainId", [], quantity)

    async def get_block(self, ref: BlockRef, full_transactions: bool = False) -> Block | None:
        """The block, or None when the node has no such block."""
        return await self._ask("eth_getBlockByNumber", [block_param(ref), full_transactions],
                               parse_block)

    async def health(self) -> NodeHealth:
        """Head, sync state, peers, chain id and the latest block, from one batch if possible."""
        calls: list[tuple[str, Params]] = [
            ("eth_blockNumber", []), ("eth_syncing", []), ("net_peerCount", []),
            ("eth_chainId", []), ("eth_getBlockByNumber", ["latest", False])]
        replies = await self._batch_or_each(calls)
        head, syncing, peers, chain, latest = replies
        # read in request order, so the error reported is the first call's that failed
        number = quantity(head.value(), head.method)
        sync_state = parse_syncing(syncing.value(), syncing.method)
        peer_count = _peers(peers)
        chain_id = quantity(chain.value(), chain.method)
        block = parse_block(latest.value(), latest.method)
        if block is None:
            raise MalformedResponse("eth_getBlockByNumber: the node has no latest block")
        return NodeHealth(number, sync_state, peer_count, chain_id, block)

    async def _batch_or_each(self, calls: Sequence[tuple[str, Params]]) -> list[Reply]:
        if self._batches:
            try:
                return await self.transport.batch(calls)
            except BatchUnsupported:
                self._batches = False
        replies = []
        for method, params in calls:
            try:
                replies.append(Reply(method, result=await self.transport.call(method, params)))
            except RpcError as exc:
                replies.append(Reply(method, error=exc))
        return replies


def _peers(reply: Reply) -> int | None:
    if reply.error is not None and reply.error.code in PEERS_UNKNOWN_CODES:
        return None
    return quantity(reply.value(), reply.method)
