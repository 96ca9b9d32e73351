"""A chain follower: reads every block of one EVM chain, turns transfers that concern a monitor
into `transfer.detected` / `transfer.confirmed` / `transfer.reverted` events, and stores them
together with its cursor in one `advance` write, so a block counts as processed only once
its events are durable.

`cursor.Cursor` decides what each block means and is pure; `ChainFollower` drives the I/O:
the head from the node, blocks and their transfers through `BlockReader`, the monitor index
and `advance` from the store. Node failures are data (`StepResult.error`), retried with
backoff by `run()`; they are never read as "no new block". When processes share a store, a
`core.leases.Lease` on the cursor (`service.follow.leases`) lets one of them follow the
chain and fences the others' writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from chains import ChainError, RpcError, TransportError
from chains.ethereum import EthereumClient
from core.clock import Clock, utc_now
from core.leases import Lease
from core.supervisor import Spawn
from service import CursorTaken, StoreError
from service.follow.block_reader import BlockReader, NodeProblem
from service.follow.cursor import CONFIRMED, DETECTED, KINDS, REVERTED, Cursor, Outbox
from service.follow.matching import IndexCache
from service.metrics import FollowerMetrics
from service.models import MatchRecord, Monitor, NewEvent

__all__ = ["CONFIRMED", "DETECTED", "REVERTED", "ChainFollower", "ChainSettings", "FollowerMetrics",
           "StepResult"]

log = logging.getLogger("crypitor.service.follower")

MAX_SPAN = 50  # blocks read and stored per advance while catching up
BACKOFF_CAP = 30.0  # seconds between retries at most


class ChainSettings(Protocol):
    """What the follower reads of `[service.chains.NAME]` (monitor.config.ChainFollowConfig)."""

    @property
    def confirmations(self) -> int: ...
    @property
    def poll_interval(self) -> float: ...
    @property
    def chain_id(self) -> int | None: ...
    @property
    def start_block(self) -> int | None: ...


class FollowerStore(Protocol):
    """The part of `service.store.Store` a follower uses."""

    async def list_monitors(self, chain: str | None = None) -> list[Monitor]: ...
    async def monitors_version(self) -> int: ...
    async def get_cursor(self, name: str) -> dict[str, Any] | None: ...
    async def advance(self, name: str, state: Mapping[str, Any], events: Sequence[NewEvent],
                      matches: Sequence[MatchRecord], now: datetime, *,
                      holder: str | None = None) -> list[str]: ...


# --- the follower ---------------------------------------------------------------------------


def cursor_name(chain: str) -> str:
    """The name of the cursor (and of its lease) of the follower of `chain`."""
    return f"chain:{chain}"


@dataclass(frozen=True)
class StepResult:
    """What one poll did. `error` is set when the node or the store failed; nothing was
    skipped then: the same blocks are read again at the next step."""

    head: int | None = None
    next_block: int | None = None  # the next block to process after this step
    processed: int = 0
    events: int = 0
    reorg_depth: int = 0
    error: str = ""
    error_kind: str = ""

    @property
    def behind(self) -> bool:
        """More blocks are ready to process now."""
        return (self.reorg_depth > 0 or (self.head is not None and self.next_block is not None
                and self.next_block <= self.head))


class ChainFollower:
    def __init__(self, name: str, config: ChainSettings, client: EthereumClient,
                 store: FollowerStore, metrics: FollowerMetrics,
                 clock: Clock = utc_now, wake: Callable[[], None] | None = None,
                 lease: Lease | None = None, spawn: Spawn | None = None) -> None:
        """`wake` is called after a write that enqueued events (the dispatcher's wake-up,
        so deliveries start without waiting for its next look at the queue). With `lease`
        (named by `cursor_name`), the chain is followed only while it is held, and every
        write is fenced by it; without, always (one process, nothing to share). The lease
        keeper runs under `spawn` (the service's supervisor) when given."""
        self.name = name
        self.config = config
        self.client = client
        self.reader = BlockReader(client)
        self.store = store
        self.metrics = metrics
        self.clock = clock
        self.wake = wake
        self.lease = lease
        self._spawn = spawn
        self.cursor_name = cursor_name(name)
        self.index = IndexCache(store, name)
        self._cursor: Cursor | None = None
        self._chain_checked = config.chain_id is None
        self._span = MAX_SPAN  # halved after a failed read, doubled back after a good one
        self._failures = 0
        for kind in KINDS:  # every series exists from the start
            metrics.events.labels(name, kind.removeprefix("transfer."))

    async def run(self) -> None:
        """Follow until cancelled (while the lease is held, when there is one); failures
        are retried with exponential backoff."""
        log.info("chain %s: follower started", self.name)
        keeper = None
        if self.lease is not None:
            if self._spawn is not None:
                keeper = self._spawn(f"lease-{self.name}", self.lease.keep)
            else:
                keeper = asyncio.create_task(self.lease.keep(), name=f"lease-{self.name}")
        try:
            await self._follow()
        finally:
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper

    async def _follow(self) -> None:
        while True:
            if self.lease is not None and not self.lease.held:
                self._cursor = None  # the holder meanwhile moves it on: read it again
                self.metrics.leader.labels(self.name).set(0)
                await self.lease.gained()
            self.metrics.leader.labels(self.name).set(1)
            try:
                result = await self.step()
            except Exception:  # our bug: logged loudly, and the chain is still followed
                log.exception("chain %s: follower step failed", self.name)
                result = StepResult(error="internal error (logged)", error_kind="internal")
            if result.error:
                self._failures += 1
                delay = min(BACKOFF_CAP,
                            self.config.poll_interval * 2 ** min(self._failures - 1, 16))
                log.warning("chain %s: %s (retry %d in %.1fs)", self.name, result.error,
                            self._failures, delay)
            else:
                if self._failures:
                    log.info("chain %s: node answers again after %d failures", self.name,
                             self._failures)
                self._failures = 0
                delay = 0.0 if result.behind else self.config.poll_interval
            await asyncio.sleep(delay)

    async def step(self) -> StepResult:
        """One poll: read the head, then process up to MAX_SPAN blocks (or walk back a reorg)."""
        head: int | None = None
        try:
            head = await self.client.block_number()
            self.metrics.head.labels(self.name).set(head)
            if not self._chain_checked:
                await self._check_chain()
            cursor = self._cursor or await self._load(head)
            if cursor.next_block > head:  # nothing new; a node behind us is not a reorg
                self._observe(head, cursor)
                return StepResult(head, cursor.next_block)
            return await self._process(head, cursor)
        except (ChainError, NodeProblem) as exc:
            kind = _kind(exc)
            self.metrics.rpc_errors.labels(self.name, kind).inc()
            self._span = max(1, self._span // 2)
            next_block = self._cursor.next_block if self._cursor else None
            return StepResult(head, next_block, error=str(exc), error_kind=kind)
        except CursorTaken:  # another process follows the chain now: not an error
            if self.lease is not None:
                self.lease.lost()
            self._cursor = None
            return StepResult(head)
        except StoreError as exc:
            self.metrics.store_errors.labels(self.name).inc()
            self._cursor = None  # read it again: the failed write may have happened or not
            return StepResult(head, error=f"store: {exc}", error_kind="store")

    @property
    def _holder(self) -> str | None:
        return None if self.lease is None else self.lease.holder

    async def _check_chain(self) -> None:
        chain_id = await self.client.chain_id()
        if chain_id != self.config.chain_id:
            raise NodeProblem("chain_id", f"the node is on chain id {chain_id}, "
                                          f"not {self.config.chain_id}: refusing to follow it")
        self._chain_checked = True

    async def _load(self, head: int) -> Cursor:
        state = await self.store.get_cursor(self.cursor_name)
        if state is not None:
            cursor = Cursor.from_json(state)
            log.info("chain %s: resuming at block %d", self.name, cursor.next_block)
        else:  # first start: saved at once, so a restart cannot begin at a later head
            start = self.config.start_block if self.config.start_block is not None else head
            cursor = Cursor(start)
            await self.store.advance(self.cursor_name, cursor.to_json(), [], [],
                                     self.clock(), holder=self._holder)
            log.info("chain %s: first start, from block %d", self.name, start)
        self._cursor = cursor
        return cursor

    async def _process(self, head: int, cursor: Cursor) -> StepResult:
        index = await self.index.current()
        first = cursor.next_block
        blocks = await self.reader.blocks(first, min(head, first + self._span - 1),
                                         full=index.addresses > 0)
        if not cursor.parent_ok(blocks[0]):
            return await self._reorg(head, cursor)
        found = await self.reader.transfers(blocks, index)
        work = cursor.copy()
        out = Outbox(self.name)
        for block, matched in zip(blocks, found, strict=True):
            work.apply(self.name, block, matched, index, self.config.confirmations, out)
        await self.store.advance(self.cursor_name, work.to_json(), out.events, out.matches,
                                 self.clock(), holder=self._holder)
        self._cursor = work
        self._span = min(MAX_SPAN, self._span * 2)
        if out.events and self.wake is not None:
            self.wake()
        for kind, count in out.counts.items():
            self.metrics.events.labels(self.name, kind.removeprefix("transfer.")).inc(count)
        self._observe(head, work)
        return StepResult(head, work.next_block, len(blocks), len(out.events))

    async def _reorg(self, head: int, cursor: Cursor) -> StepResult:
        """Find the last block we processed that is still canonical and resume after it."""
        numbers = sorted(cursor.blocks, reverse=True)
        canonical = await self.client.get_blocks(numbers)
        ancestor = next((n for n, block in zip(numbers, canonical, strict=True)
                         if block is not None and block.hash == cursor.blocks[n]), None)
        if ancestor is None:
            ancestor = min(numbers) - 1
            log.error("chain %s: reorg deeper than the %d blocks kept; resuming at block %d, "
                      "transfers confirmed before it are not revisited", self.name,
                      len(numbers), ancestor + 1)
        work = cursor.copy()
        depth = work.roll_back(ancestor, head)
        log.warning("chain %s: reorg of %d blocks, resuming after block %d", self.name, depth,
                    ancestor)
        self.metrics.reorgs.labels(self.name).inc()
        self.metrics.reorg_depth.labels(self.name).set(depth)
        # kept in memory only: after a crash the old cursor finds the same reorg again
        self._cursor = work
        self._observe(head, work)
        return StepResult(head, work.next_block, reorg_depth=depth)

    def _observe(self, head: int, cursor: Cursor) -> None:
        processed = cursor.next_block - 1
        self.metrics.processed.labels(self.name).set(processed)
        self.metrics.lag.labels(self.name).set(max(0, head - processed))
        self.metrics.pending.labels(self.name).set(len(cursor.pending))


def _kind(exc: ChainError | NodeProblem) -> str:
    if isinstance(exc, NodeProblem):
        return exc.kind
    if isinstance(exc, TransportError):
        return exc.kind
    if isinstance(exc, RpcError):
        return "rpc_error"
    return "malformed"
