"""Reading a span of blocks from an EVM node for a follower: the blocks themselves (each the
child of the one before), and the transfers in them that concern a monitor: native value
transfers (failed transactions left out, by their receipts) and ERC-20/721 Transfer logs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from chains import MalformedResponse
from chains.ethereum import Block, EthereumClient, transactions_of
from service.follow.matching import (
    TRANSFER_TOPIC,
    Match,
    MonitorIndex,
    Transfer,
    log_transfer,
    native_transfers,
)


class NodeProblem(Exception):
    """The node answered, but not in a way the chain can be read from (yet)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class BlockReader:
    def __init__(self, client: EthereumClient) -> None:
        self.client = client

    async def blocks(self, first: int, last: int, full: bool) -> list[Block]:
        """Blocks first..last, each the child of the one before; a break in that chain is a
        reorg happening while we read, so the batch ends before it."""
        got = await self.client.get_blocks(range(first, last + 1), full)
        blocks: list[Block] = []
        for number, block in zip(range(first, last + 1), got, strict=True):
            if block is None:
                raise NodeProblem("missing_block", f"the node has no block {number} although "
                                                   f"its head is {last} or more")
            if block.number != number:
                raise MalformedResponse(f"eth_getBlockByNumber: asked for block {number}, "
                                        f"got {block.number}")
            if blocks and block.parent_hash != blocks[-1].hash:
                break
            blocks.append(block)
        return blocks

    async def transfers(self, blocks: Sequence[Block],
                         index: MonitorIndex) -> list[list[tuple[Transfer, list[Match]]]]:
        """Per block, the transfers that match a monitor (failed transactions left out)."""
        if not index.addresses:
            return [[] for _ in blocks]
        logs = await self.client.get_logs_of_blocks([b.hash for b in blocks], [TRANSFER_TOPIC])
        found: list[list[tuple[Transfer, list[Match]]]] = []
        for block, block_logs in zip(blocks, logs, strict=True):
            transfers = native_transfers(block, transactions_of(block))
            positions: Counter[str] = Counter()
            for entry in sorted(block_logs, key=lambda e: e.log_index):
                if entry.block_hash != block.hash:
                    raise NodeProblem("inconsistent", f"eth_getLogs: a log of block {block.hash} "
                                                      f"says it is in {entry.block_hash}")
                transfer = log_transfer(entry, positions[entry.tx_hash])
                positions[entry.tx_hash] += 1
                if transfer is not None:
                    transfers.append(transfer)
            found.append([(t, hits) for t in transfers if (hits := index.match(t))])
        return await self._drop_failed(blocks, found)

    async def _drop_failed(self, blocks: Sequence[Block],
                           found: list[list[tuple[Transfer, list[Match]]]],
                           ) -> list[list[tuple[Transfer, list[Match]]]]:
        """A failed transaction keeps its value in the block but moved nothing: matched native
        transfers are checked against their receipts (a failed one has no logs anyway)."""
        native = [t for per_block in found for t, _ in per_block if t.category == "native"]
        if not native:
            return found
        receipts = await self.client.get_receipts([t.tx_hash for t in native])
        failed = set()
        for transfer, receipt in zip(native, receipts, strict=True):
            if receipt is None or receipt.block_hash != transfer.block_hash:
                raise NodeProblem("inconsistent", f"transaction {transfer.tx_hash} is no longer "
                                                  f"in block {transfer.block_number}")
            if receipt.status is False:
                failed.add(transfer.tx_hash)
        if not failed:
            return found
        return [[(t, h) for t, h in per_block if t.category != "native" or
                 t.tx_hash not in failed] for per_block in found]
