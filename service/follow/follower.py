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

Answers that disagree with each other (`block_reader.NotReady`: a block announced but not
served, logs the block contradicts) are node lag, not failure: asked again within a few poll
intervals, counted in `crypitor_follower_not_ready_total`. A reorg is what the chain shows
read again, never one block's claim: a parent hash that re-reading does not confirm is
NotReady too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from chains import ChainError, RateLimited, RpcError, TransportError
from chains.ethereum import EthereumClient
from core.clock import Clock, utc_now
from core.leases import Lease
from core.supervisor import Spawn
from service import CursorTaken, StoreError
from service.follow.block_reader import BlockReader, NodeProblem, NotReady
from service.follow.cursor import CONFIRMED, DETECTED, KINDS, REVERTED, Cursor, Outbox
from service.follow.matching import IndexCache
from service.metrics import FollowerMetrics
from service.models import MatchRecord, Monitor, NewEvent, Stored

__all__ = ["CONFIRMED", "DETECTED", "REVERTED", "ChainFollower", "ChainSettings", "FollowerMetrics",
           "StepResult"]

log = logging.getLogger("crypitor.service.follower")

MAX_SPAN = 50  # blocks read and stored per advance while catching up
BACKOFF_CAP = 30.0  # seconds between retries at most
NOT_READY_POLLS = 4  # a node that lags is asked again within this many poll intervals
RETRY_AFTER_CAP = 300.0  # seconds: the most a rate-limited node's Retry-After is obeyed
LAG_WARNING = 20  # NotReady answers in a row before the wait is logged as a warning


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
                      holder: str | None = None) -> list[Stored]: ...


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
    not_ready: str = ""  # the reason the node's answers were not believed yet
    retry_after: float | None = None  # what a rate-limited node asked for

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
        self._waits = 0  # NotReady steps in a row
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
            await asyncio.sleep(self._delay(result))

    def _delay(self, result: StepResult) -> float:
        """Seconds until the next step, and the log lines of a failure or a wait."""
        poll = self.config.poll_interval
        if result.error:
            self._failures += 1
            delay = min(BACKOFF_CAP, poll * 2.0 ** min(self._failures - 1, 16))
            if result.retry_after is not None:
                delay = max(delay, min(result.retry_after, RETRY_AFTER_CAP))
            log.warning("chain %s: %s (retry %d in %.1fs)", self.name, result.error,
                        self._failures, delay)
            return delay
        if self._failures:
            log.info("chain %s: node answers again after %d failures", self.name,
                     self._failures)
            self._failures = 0
        if result.not_ready:
            self._waits += 1
            delay = min(poll * NOT_READY_POLLS, poll * 2.0 ** min(self._waits - 1, 16),
                        BACKOFF_CAP)
            if self._waits == 1 or self._waits % LAG_WARNING == 0:
                log.log(logging.WARNING if self._waits >= LAG_WARNING else logging.INFO,
                        "chain %s: waiting for the node (%s; %d in a row)", self.name,
                        result.not_ready, self._waits)
            return delay
        if self._waits:
            log.info("chain %s: the node's answers agree again after %d waits", self.name,
                     self._waits)
            self._waits = 0
        return 0.0 if result.behind else poll

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
        except NotReady as exc:
            self.metrics.not_ready.labels(self.name, exc.reason).inc()
            next_block = self._cursor.next_block if self._cursor else None
            return StepResult(head, next_block, not_ready=f"{exc.reason}: {exc}")
        except (ChainError, NodeProblem) as exc:
            kind = _kind(exc)
            self.metrics.rpc_errors.labels(self.name, kind).inc()
            self._span = max(1, self._span // 2)
            next_block = self._cursor.next_block if self._cursor else None
            retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
            return StepResult(head, next_block, error=str(exc), error_kind=kind,
                              retry_after=retry_after)
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
            self._ignored_start(cursor)
        else:  # first start: saved at once, so a restart cannot begin at a later head
            start = self.config.start_block if self.config.start_block is not None else head
            cursor = Cursor(start, start=start)
            await self.store.advance(self.cursor_name, cursor.to_json(), [], [],
                                     self.clock(), holder=self._holder)
            log.info("chain %s: first start, from block %d", self.name, start)
        self._cursor = cursor
        return cursor

    def _ignored_start(self, cursor: Cursor) -> None:
        """`start_block` counts at the first start only: say so when it was changed since."""
        wanted = self.config.start_block
        if wanted is None or wanted == cursor.start:
            return
        began = "" if cursor.start is None else f", which began at block {cursor.start}"
        log.warning("chain %s: start_block = %d is ignored: the saved cursor %s%s resumes at "
                    "block %d. To start from start_block, stop every process following this "
                    "chain and delete the cursor (README: Address monitors, starting again)",
                    self.name, wanted, self.cursor_name, began, cursor.next_block)

    async def _process(self, head: int, cursor: Cursor) -> StepResult:
        index = await self.index.current()
        first = cursor.next_block
        blocks = await self.reader.blocks(first, min(head, first + self._span - 1),
                                         full=index.addresses > 0)
        if not cursor.parent_ok(blocks[0]):
            return await self._reorg(head, cursor, f"block {first}'s parent is "
                                                   f"{blocks[0].parent_hash}")
        found = await self.reader.transfers(blocks, index)
        work = cursor.copy()
        out = Outbox(self.name)
        for block, matched in zip(blocks, found, strict=True):
            work.apply(self.name, block, matched, index, self.config.confirmations, out)
        stored = await self.store.advance(self.cursor_name, work.to_json(), out.events,
                                          out.matches, self.clock(), holder=self._holder)
        self._cursor = work
        self._span = min(MAX_SPAN, self._span * 2)
        if out.events and self.wake is not None:
            self.wake()
        for event, kept in zip(out.events, stored, strict=True):
            if kept.new:  # one the queue had already (a block processed again) is not news
                self.metrics.events.labels(self.name,
                                           event.type.removeprefix("transfer.")).inc()
        self._observe(head, work)
        return StepResult(head, work.next_block, len(blocks), len(out.events))

    async def _reorg(self, head: int, cursor: Cursor, claim: str) -> StepResult:
        """A block's parent is not the block we processed before it: read our recent blocks
        again, find the last one still canonical and resume after it. If the newest one
        still is, the claim was a node's (one backend on another branch for a moment, a
        broken proxy), not the chain's: NotReady, and nothing rolled back."""
        numbers = sorted(cursor.blocks, reverse=True)
        canonical = await self.client.get_blocks(numbers)
        ancestor = next((n for n, block in zip(numbers, canonical, strict=True)
                         if block is not None and block.hash == cursor.blocks[n]), None)
        if ancestor == cursor.next_block - 1:
            raise NotReady("parent_mismatch", f"{claim}, but read again block {ancestor} is "
                                              f"still the one processed: no reorg")
        beyond = ancestor is None
        if ancestor is None:
            ancestor = min(numbers) - 1
        work = cursor.copy()
        rolled = work.roll_back(ancestor, head)
        self.metrics.reorgs.labels(self.name).inc()
        self.metrics.reorg_depth.labels(self.name).set(rolled.depth)
        confirmations = self.config.confirmations
        if beyond or rolled.depth > confirmations or rolled.confirmed:
            self.metrics.deep_reorgs.labels(self.name).inc()
            log.error("chain %s: reorg of %d blocks%s, deeper than the chain's %d confirmations"
                      " (FollowerDeepReorg): %d transfers told confirmed are checked again "
                      "(transfer.reverted if they left the chain, a new transfer.confirmed if "
                      "they moved); resuming after block %d. Confirmations this low are not "
                      "safe on this chain", self.name, rolled.depth,
                      f" (more than the {len(numbers)} blocks kept: older confirmations are "
                      f"not revisited)" if beyond else "", confirmations, rolled.confirmed,
                      ancestor)
        else:
            log.warning("chain %s: reorg of %d blocks, resuming after block %d", self.name,
                        rolled.depth, ancestor)
        # kept in memory only: after a crash the old cursor finds the same reorg again
        self._cursor = work
        self._observe(head, work)
        return StepResult(head, work.next_block, reorg_depth=rolled.depth)

    def _observe(self, head: int, cursor: Cursor) -> None:
        processed = cursor.next_block - 1
        self.metrics.processed.labels(self.name).set(processed)
        self.metrics.lag.labels(self.name).set(max(0, head - processed))
        self.metrics.pending.labels(self.name).set(len(cursor.pending))


def _kind(exc: ChainError | NodeProblem) -> str:
    if isinstance(exc, NodeProblem):
        return exc.kind  # chain_id
    if isinstance(exc, TransportError):
        return exc.kind
    if isinstance(exc, RpcError):
        return "rpc_error"
    return "malformed"
