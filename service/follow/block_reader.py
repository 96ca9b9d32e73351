"""Reading a span of blocks from an EVM node for a follower: the blocks themselves (each the
child of the one before), and the transfers in them that concern a monitor: native value
transfers (failed transactions left out, by their receipts) and ERC-20/721 Transfer logs.

What a node says is checked against what else it said before it is believed: a node behind
a load balancer answers from several backends, some of them behind the others. A block
announced by the head but not served yet, an empty `eth_getLogs` answer that the block's
logs bloom and receipts contradict, a receipt not found: each is `NotReady`, asked again
after a short wait, never taken for "nothing there".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from chains import MalformedResponse
from chains.bloom import bloom_mask, may_contain
from chains.ethereum import Block, EthereumClient, Log, transactions_of
from service.follow.matching import (
    TRANSFER_TOPIC,
    Match,
    MonitorIndex,
    Transfer,
    log_transfer,
    native_transfers,
)

_TRANSFER_MASK = bloom_mask(bytes.fromhex(TRANSFER_TOPIC[2:]))


class NodeProblem(Exception):
    """The node answered, but not in a way the chain can be read from."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class NotReady(Exception):
    """The node's answers do not agree yet (one backend behind another, an index not written
    yet): nothing is wrong that waiting a poll interval or two will not cure. `reason` is
    the `crypitor_follower_not_ready_total` label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class BlockReader:
    def __init__(self, client: EthereumClient) -> None:
        self.client = client

    async def blocks(self, first: int, last: int, full: bool) -> list[Block]:
        """Blocks first..last, each the child of the one before. The span ends before a
        block the node does not serve yet (its head ran ahead of its blocks: lag, not
        failure; NotReady when that is the first) and before a break in the chain of parent
        hashes (a reorg happening while we read)."""
        got = await self.client.get_blocks(range(first, last + 1), full)
        blocks: list[Block] = []
        for number, block in zip(range(first, last + 1), got, strict=True):
            if block is None:
                if not blocks:
                    raise NotReady("block_missing", f"block {number} is not served yet "
                                                    f"although the head is {last} or more")
                break
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
        await self._check_empty(blocks, logs, index)
        found: list[list[tuple[Transfer, list[Match]]]] = []
        for block, block_logs in zip(blocks, logs, strict=True):
            transfers = native_transfers(block, transactions_of(block))
            positions: Counter[str] = Counter()
            for entry in sorted(block_logs, key=lambda e: e.log_index):
                if entry.block_hash != block.hash:
                    raise NotReady("inconsistent", f"eth_getLogs: a log of block {block.hash} "
                                                   f"says it is in {entry.block_hash}")
                transfer = log_transfer(entry, positions[entry.tx_hash])
                positions[entry.tx_hash] += 1
                if transfer is not None:
                    transfers.append(transfer)
            found.append([(t, hits) for t in transfers if (hits := index.match(t))])
        return await self._drop_failed(blocks, found)

    async def _check_empty(self, blocks: Sequence[Block], logs: Sequence[Sequence[Log]],
                           index: MonitorIndex) -> None:
        """An empty `eth_getLogs` answer is what a backend that does not know the block yet
        gives, and a flaky log index too: it is believed only when the block agrees. Its
        logs bloom rules most blocks out at once (no Transfer topic, or no watched address);
        for the others the receipts decide, as they are what the logs are made from."""
        doubtful = [block for block, block_logs in zip(blocks, logs, strict=True)
                    if not block_logs and block.transactions and (
                        block.logs_bloom is None
                        or (may_contain(block.logs_bloom, _TRANSFER_MASK)
                            and index.may_be_in(block.logs_bloom)))]
        if not doubtful:
            return
        hashes = [tx.hash for block in doubtful for tx in transactions_of(block)]
        receipts = await self.client.get_receipts(hashes)
        by_hash = {block.hash: block.number for block in doubtful}
        for tx_hash, receipt in zip(hashes, receipts, strict=True):
            if receipt is None:
                raise NotReady("receipt_missing", f"eth_getTransactionReceipt: no receipt of "
                                                  f"{tx_hash} yet")
            if receipt.block_hash not in by_hash:
                raise NotReady("inconsistent", f"transaction {tx_hash} is not in the block "
                                               f"that listed it any more")
            if any(log_transfer(entry) is not None for entry in receipt.logs):
                number = by_hash[receipt.block_hash]
                raise NotReady("logs_contradicted", f"eth_getLogs: no Transfer log in block "
                                                    f"{number}, but the receipt of {tx_hash} "
                                                    f"has one")

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
            if receipt is None:
                raise NotReady("receipt_missing", f"eth_getTransactionReceipt: no receipt of "
                                                  f"{transfer.tx_hash} yet")
            if receipt.block_hash != transfer.block_hash:
                raise NotReady("inconsistent", f"transaction {transfer.tx_hash} is no longer "
                                               f"in block {transfer.block_number}")
            if receipt.status is False:
                failed.add(transfer.tx_hash)
        if not failed:
            return found
        return [[(t, h) for t, h in per_block if t.category != "native" or
                 t.tx_hash not in failed] for per_block in found]
