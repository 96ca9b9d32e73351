"""Ethereum/EVM execution-node client: typed answers to the few eth_* calls we rely on.

Each RPC method is one `_ask(method, params, parser)` line and each answer shape one parser
function. A chain follower reads many blocks at once: `get_blocks`, `get_logs_of_blocks` and
`get_receipts` send one batch (or the calls one by one on a node that refuses batches) and
raise the first error any call got.
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
class Transaction:
    """The fields of a transaction object a transfer follower reads."""

    hash: str
    from_: str
    to: str | None  # None: contract creation
    value: int  # wei


@dataclass(frozen=True, slots=True)
class Log:
    address: str  # the emitting contract, lower-case
    topics: tuple[str, ...]  # lower-case 32-byte hashes
    data: bytes
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    removed: bool = False  # only filters report removed logs; eth_getLogs never should


@dataclass(frozen=True, slots=True)
class Receipt:
    tx_hash: str
    block_hash: str
    block_number: int
    status: bool | None  # None before Byzantium (no status field, only a state root)


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


def address(value: object, what: str) -> str:
    """A 20-byte address, lower-cased: matching must not depend on EIP-55 capitals."""
    if (not isinstance(value, str) or not value.startswith("0x") or len(value) != 42
            or not _HEX.issuperset(value[2:])):
        raise MalformedResponse(f"{what}: expected a 20-byte 0x address, got {shown(value)}")
    return value.lower()


def hex_data(value: object, what: str) -> bytes:
    """A DATA field: "0x" then an even number of hex digits."""
    if (not isinstance(value, str) or not value.startswith("0x") or len(value) % 2
            or not _HEX.issuperset(value[2:])):
        raise MalformedResponse(f"{what}: expected 0x-prefixed hex bytes, got {shown(value)}")
    return bytes.fromhex(value[2:])


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


def parse_transaction(value: object, what: str) -> Transaction:
    if not isinstance(value, Mapping):
        raise MalformedResponse(f"{what}: expected a transaction object, got {shown(value)}")
    to = value.get("to")
    return Transaction(
        hash=data32(value.get("hash"), f"{what}.hash"),
        from_=address(value.get("from"), f"{what}.from"),
        to=None if to is None else address(to, f"{what}.to"),
        value=quantity(value.get("value"), f"{what}.value"),
    )


def transactions_of(block: Block, what: str = "eth_getBlockByNumber") -> list[Transaction]:
    """The block's transaction objects (it must have been asked for with full transactions)."""
    return [parse_transaction(tx, f"{what}.transactions[{i}]")
            for i, tx in enumerate(block.transactions)]


def parse_logs(value: object, what: str) -> tuple[Log, ...]:
    if not isinstance(value, list):
        raise MalformedResponse(f"{what}: expected a list of logs, got {shown(value)}")
    return tuple(_parse_log(item, f"{what}[{i}]") for i, item in enumerate(value))


def _parse_log(value: object, what: str) -> Log:
    if not isinstance(value, Mapping):
        raise MalformedResponse(f"{what}: expected a log object, got {shown(value)}")
    topics = value.get("topics")
    if not isinstance(topics, list):
        raise MalformedResponse(f"{what}.topics: expected a list, got {shown(topics)}")
    removed = value.get("removed", False)
    return Log(
        address=address(value.get("address"), f"{what}.address"),
        topics=tuple(data32(t, f"{what}.topics[{i}]") for i, t in enumerate(topics)),
        data=hex_data(value.get("data"), f"{what}.data"),
        block_number=uint64(value.get("blockNumber"), f"{what}.blockNumber"),
        block_hash=data32(value.get("blockHash"), f"{what}.blockHash"),
        tx_hash=data32(value.get("transactionHash"), f"{what}.transactionHash"),
        log_index=quantity(value.get("logIndex"), f"{what}.logIndex"),
        removed=removed is True,
    )


def parse_receipt(value: object, what: str) -> Receipt | None:
    if value is None:
        return None  # unknown, or not mined (any more)
    if not isinstance(value, Mapping):
        raise MalformedResponse(f"{what}: expected a receipt object, got {shown(value)}")
    status = value.get("status")
    return Receipt(
        tx_hash=data32(value.get("transactionHash"), f"{what}.transactionHash"),
        block_hash=data32(value.get("blockHash"), f"{what}.blockHash"),
        block_number=uint64(value.get("blockNumber"), f"{what}.blockNumber"),
        status=None if status is None else quantity(status, f"{what}.status") == 1,
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

    async def get_blocks(self, refs: Sequence[BlockRef],
                         full_transactions: bool = False) -> list[Block | None]:
        """`get_block` for each ref, in one batch when the node takes batches."""
        return await self._ask_many(
            [("eth_getBlockByNumber", [block_param(r), full_transactions]) for r in refs],
            parse_block)

    async def get_logs(self, *, block_hash: str | None = None,
                       from_block: BlockRef | None = None, to_block: BlockRef | None = None,
                       address: str | Sequence[str] | None = None,
                       topics: Sequence[str | Sequence[str] | None] | None = None,
                       ) -> tuple[Log, ...]:
        """eth_getLogs; `block_hash` (EIP-234) excludes a block range."""
        return await self._ask("eth_getLogs", [_filter(block_hash, from_block, to_block,
                                                       address, topics)], parse_logs)

    async def get_logs_of_blocks(self, block_hashes: Sequence[str],
                                 topics: Sequence[str | Sequence[str] | None] | None = None,
                                 ) -> list[tuple[Log, ...]]:
        """The logs of each block, asked by hash so they belong to exactly that block."""
        return await self._ask_many(
            [("eth_getLogs", [_filter(h, None, None, None, topics)]) for h in block_hashes],
            parse_logs)

    async def get_receipts(self, tx_hashes: Sequence[str]) -> list[Receipt | None]:
        return await self._ask_many(
            [("eth_getTransactionReceipt", [h]) for h in tx_hashes], parse_receipt)

    async def _ask_many(self, calls: Sequence[tuple[str, Params]],
                        parse: Callable[[object, str], T]) -> list[T]:
        replies = await self._batch_or_each(calls)
        return [parse(reply.value(), reply.method) for reply in replies]

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


def _filter(block_hash: str | None, from_block: BlockRef | None, to_block: BlockRef | None,
            address: str | Sequence[str] | None,
            topics: Sequence[str | Sequence[str] | None] | None) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if block_hash is not None:
        query["blockHash"] = block_hash
    if from_block is not None:
        query["fromBlock"] = block_param(from_block)
    if to_block is not None:
        query["toBlock"] = block_param(to_block)
    if address is not None:
        query["address"] = address if isinstance(address, str) else list(address)
    if topics is not None:
        query["topics"] = [t if t is None or isinstance(t, str) else list(t) for t in topics]
    return query


def _peers(reply: Reply) -> int | None:
    if reply.error is not None and reply.error.code in PEERS_UNKNOWN_CODES:
        return None
    return quantity(reply.value(), reply.method)
