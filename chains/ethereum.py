"""Ethereum/EVM execution-node client: typed answers to the few eth_* calls we rely on.

Each RPC method is one `_ask(method, params, parser)` line and each answer shape one parser
function (in `chains.ethereum_types`). A chain follower reads many blocks at once:
`get_blocks`, `get_logs_of_blocks` and `get_receipts` send one batch (or the calls one by one
on a node that refuses batches, trying a batch again every BATCH_RETRY seconds) and raise the
first error any call got. A rate limit is not a refused batch: it is raised, batches stay on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp

from chains import MalformedResponse, RpcError
from chains.ethereum_types import (
    Block,
    Log,
    NodeHealth,
    Receipt,
    SyncStatus,
    Transaction,
    address,
    data32,
    hex_data,
    parse_block,
    parse_logs,
    parse_receipt,
    parse_syncing,
    parse_transaction,
    quantity,
    transactions_of,
    uint64,
)
from chains.jsonrpc import (
    DEFAULT_MAX_RESPONSE_BYTES,
    BatchUnsupported,
    JsonRpcTransport,
    Params,
    Reply,
)

# the value types and parsers moved to chains.ethereum_types; re-exported so
# `from chains.ethereum import ...` (service/ among others) still works
__all__ = [
    "PEERS_UNKNOWN_CODES", "Block", "BlockRef", "EthereumClient", "Log", "NodeHealth",
    "Receipt", "SyncStatus", "Transaction", "address", "block_param", "data32", "hex_data",
    "parse_block", "parse_logs", "parse_receipt", "parse_syncing", "parse_transaction",
    "quantity", "transactions_of", "uint64",
]

T = TypeVar("T")
BlockRef = int | str  # a number, or a tag: "latest", "safe", "finalized", "earliest"
# -32601 is JSON-RPC's "method not found", -32004 EIP-1474's "method not supported": providers
# that hide their peers answer net_peerCount with either
PEERS_UNKNOWN_CODES = frozenset({-32601, -32004})
# after a node refused a batch, calls go one by one this long, then a batch is tried again:
# load-balanced pools mix backends that take batches with ones that do not, and a refusal may
# have been a passing proxy fault
BATCH_RETRY = 300.0


def block_param(ref: BlockRef) -> str:
    return hex(ref) if isinstance(ref, int) else ref


class EthereumClient:
    """Typed eth_* calls over one node URL; `health()` is one round trip when batches work."""

    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float, *,
                 auth: tuple[str, str] | None = None,
                 headers: Mapping[str, str] | None = None,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.transport = JsonRpcTransport(session, url, timeout, auth=auth, headers=headers,
                                          max_response_bytes=max_response_bytes)
        self._monotonic = monotonic
        self._no_batches_until: float | None = None  # set when the node refuses a batch

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

    async def get_blocks(self, refs: Sequence[BlockRef],
                         full_transactions: bool = False) -> list[Block | None]:
        """Each block (None where the node has no such block), in one batch when the node
        takes batches."""
        return await self._ask_many(
            [("eth_getBlockByNumber", [block_param(r), full_transactions]) for r in refs],
            parse_block)

    async def get_logs_of_blocks(self, block_hashes: Sequence[str],
                                 topics: Sequence[str | Sequence[str] | None] | None = None,
                                 ) -> list[tuple[Log, ...]]:
        """The logs of each block, asked by hash (EIP-234) so they belong to exactly that
        block."""
        return await self._ask_many(
            [("eth_getLogs", [_filter(h, topics)]) for h in block_hashes], parse_logs)

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
        until = self._no_batches_until
        if until is None or self._monotonic() >= until:
            try:
                replies = await self.transport.batch(calls)
            except BatchUnsupported:
                # one by one for a while, saving the refused round trip on every read
                self._no_batches_until = self._monotonic() + BATCH_RETRY
            else:
                self._no_batches_until = None
                return replies
        replies = []
        for method, params in calls:
            try:
                replies.append(Reply(method, result=await self.transport.call(method, params)))
            except RpcError as exc:
                replies.append(Reply(method, error=exc))
        return replies


def _filter(block_hash: str,
            topics: Sequence[str | Sequence[str] | None] | None) -> dict[str, Any]:
    query: dict[str, Any] = {"blockHash": block_hash}
    if topics is not None:
        query["topics"] = [t if t is None or isinstance(t, str) else list(t) for t in topics]
    return query


def _peers(reply: Reply) -> int | None:
    if reply.error is not None and reply.error.code in PEERS_UNKNOWN_CODES:
        return None
    return quantity(reply.value(), reply.method)
