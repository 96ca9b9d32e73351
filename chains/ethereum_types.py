"""Ethereum JSON-RPC answers as frozen values, and the parsers that check each answer shape.

One parser per shape (quantity, hash, block, transaction, log, receipt); any deviation from
the JSON-RPC spec is a `MalformedResponse` naming the field path and the bad value.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chains import MalformedResponse
from chains.bloom import BLOOM_BYTES
from chains.jsonrpc import shown

_HEX = frozenset(string.hexdigits)


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
    logs_bloom: int | None = None  # chains.bloom's form; None when the node sends none


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
    logs: tuple[Log, ...] = ()


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
        logs_bloom=_bloom(value.get("logsBloom"), f"{what}.logsBloom"),
    )


def _bloom(value: object, what: str) -> int | None:
    if value is None:
        return None
    if (not isinstance(value, str) or not value.startswith("0x")
            or len(value) != 2 + 2 * BLOOM_BYTES or not _HEX.issuperset(value[2:])):
        raise MalformedResponse(f"{what}: expected {BLOOM_BYTES} bytes of 0x hex, got "
                                f"{shown(value)}")
    return int(value[2:], 16)


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
        logs=parse_logs(value.get("logs", []), f"{what}.logs"),
    )

