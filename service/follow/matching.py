"""Which monitors a transfer concerns: the transfers a block holds, and an index from watched
address to the monitors watching it, so a block costs two dictionary look-ups per transfer
whatever the number of monitors or addresses (only the monitors that match cost more).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from chains.bloom import address_topic, bloom_masks
from chains.ethereum import Block, Log, Transaction
from service.models import Category, Direction, Monitor

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
_ADDRESS_PAD = "0x" + "0" * 24  # an ABI-encoded address: 12 zero bytes, then 20


@dataclass(frozen=True, slots=True)
class Transfer:
    """One movement of value: a native transfer (a transaction) or a Transfer log."""

    category: Category
    tx_hash: str
    log_index: int | None  # None for native
    block_number: int
    block_hash: str
    from_: str
    to: str | None  # None: a native transfer that creates a contract
    contract: str | None  # the token contract; None for native
    value: int  # wei or token amount; the token id for erc721
    # the log's place among its transaction's Transfer logs (None for native): unlike
    # log_index, which counts from the start of the block, it stays when a reorg moves
    # the transaction to another block
    position: int | None = None

    @property
    def key(self) -> str:
        """What identifies the transfer across blocks: a reorg may move it, not change it."""
        return f"{self.tx_hash}:{'native' if self.position is None else self.position}"


def native_transfers(block: Block, transactions: Iterable[Transaction]) -> list[Transfer]:
    return [Transfer("native", tx.hash, None, block.number, block.hash, tx.from_, tx.to, None,
                     tx.value) for tx in transactions if tx.value > 0]


def log_transfer(log: Log, position: int = 0) -> Transfer | None:
    """The Transfer a log states, or None for another event or a non-standard encoding
    (a contract's odd event is not the node's fault: it is skipped, not an error).
    `position`: the log's place among its transaction's Transfer-topic logs."""
    topics = log.topics
    if log.removed or len(topics) not in (3, 4) or topics[0] != TRANSFER_TOPIC:
        return None
    if not (topics[1].startswith(_ADDRESS_PAD) and topics[2].startswith(_ADDRESS_PAD)):
        return None
    sender, receiver = "0x" + topics[1][26:], "0x" + topics[2][26:]
    if len(topics) == 4:
        category: Category = "erc721"
        value = int(topics[3], 16)
    elif len(log.data) == 32:
        category, value = "erc20", int.from_bytes(log.data, "big")
    else:
        return None
    return Transfer(category, log.tx_hash, log.log_index, log.block_number, log.block_hash,
                    sender, receiver, log.address, value, position)


class MonitorSource(Protocol):
    """The part of the store the index is built from."""

    async def list_monitors(self, chain: str | None = None) -> list[Monitor]: ...

    async def monitors_version(self) -> int: ...


Match = tuple[Monitor, Direction]  # "all": the transfer goes between two watched addresses


class MonitorIndex:
    """Enabled monitors of one chain by lower-case address; `lookups` counts dictionary
    probes, which is the whole per-transfer cost until something matches."""

    def __init__(self, monitors: Iterable[Monitor]) -> None:
        self.lookups = 0
        self.monitors: dict[str, Monitor] = {}
        by_address: dict[str, list[_Watch]] = {}
        for monitor in monitors:
            if not monitor.enabled:
                continue
            self.monitors[monitor.id] = monitor
            # stored lower-case already; lowering again keeps a mixed-case value harmless
            watch = _Watch(monitor, frozenset(c.lower() for c in monitor.contracts))
            for addr in monitor.addresses:
                by_address.setdefault(addr.lower(), []).append(watch)
        self._by_address = {a: tuple(ws) for a, ws in by_address.items()}
        self._masks: list[int] | None = None

    @property
    def addresses(self) -> int:
        return len(self._by_address)

    def may_be_in(self, bloom: int) -> bool:
        """Whether a block with this logs bloom may hold a Transfer log naming a watched
        address as sender or receiver (False proves it holds none). The masks are made at
        the first ask (a Keccak-256 per address), not at every rebuild of the index."""
        if self._masks is None:
            self._masks = bloom_masks(address_topic(a) for a in self._by_address)
        return any(bloom & mask == mask for mask in self._masks)

    def match(self, transfer: Transfer) -> list[Match]:
        """Each monitor the transfer concerns, once, with the side its watched address is on."""
        self.lookups += 2
        outgoing = self._by_address.get(transfer.from_, ())
        incoming = self._by_address.get(transfer.to, ()) if transfer.to is not None else ()
        if not outgoing and not incoming:
            return []
        found: dict[str, Match] = {}
        for watch in outgoing:
            if watch.monitor.direction != "in" and watch.wants(transfer):
                found[watch.monitor.id] = (watch.monitor, "out")
        for watch in incoming:
            monitor = watch.monitor
            if monitor.direction != "out" and watch.wants(transfer):
                found[monitor.id] = (monitor, "all" if monitor.id in found else "in")
        return list(found.values())


class _Watch(NamedTuple):
    monitor: Monitor
    contracts: frozenset[str]  # lower-case; empty: any contract

    def wants(self, transfer: Transfer) -> bool:
        """Category and contract allow-list; the allow-list concerns tokens only."""
        monitor = self.monitor
        if transfer.category == "native":
            return monitor.native
        if not (monitor.erc20 if transfer.category == "erc20" else monitor.erc721):
            return False
        return not self.contracts or transfer.contract in self.contracts


def watched(monitor: Monitor, transfer: Transfer, direction: Direction) -> tuple[str, ...]:
    """The monitor's addresses the transfer involves, for the monitor's event history."""
    sides: Sequence[str | None] = {"out": (transfer.from_,), "in": (transfer.to,),
                                   "all": (transfer.from_, transfer.to)}[direction]
    return tuple(dict.fromkeys(a for a in sides if a is not None))


class IndexCache:
    """The index of one chain, rebuilt only when the store's monitors version changes."""

    def __init__(self, source: MonitorSource, chain: str) -> None:
        self._source, self._chain = source, chain
        self._version: int | None = None
        self._index = MonitorIndex(())
        self.builds = 0

    async def current(self) -> MonitorIndex:
        version = await self._source.monitors_version()  # read first: a change in between
        if version != self._version:  # only makes the next call rebuild again
            monitors = await self._source.list_monitors(self._chain)
            self._index = MonitorIndex(m for m in monitors if m.chain == self._chain)
            self._version = version
            self.builds += 1
        return self._index
