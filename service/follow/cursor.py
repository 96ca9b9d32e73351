"""A chain follower's cursor: the next block to read, the recent canonical block hashes (to
see reorgs) and the state of every match (detected -> confirmed, or -> reverted by a reorg).
Pure: `ChainFollower` reads the node and the store, `Cursor.apply` decides what each block
means, and the whole cursor is saved (as JSON) with the events of each step.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chains.ethereum import Block
from service.follow.matching import Match, MonitorIndex, Transfer, watched
from service.models import MatchRecord, Monitor, NewEvent

DETECTED, CONFIRMED, REVERTED = "transfer.detected", "transfer.confirmed", "transfer.reverted"
KINDS = (DETECTED, CONFIRMED, REVERTED)
MIN_WINDOW = 64  # recent block hashes kept: the deepest reorg that is followed exactly
CURSOR_VERSION = 1


@dataclass
class Pending:
    """A detected match waiting for its confirmations. `doubt`: its block was rolled back by
    a reorg and the new branch has not shown the transfer again yet."""

    key: str  # tx hash, log position in the tx or "native", monitor id
    monitor_id: str
    payload: dict[str, Any]  # as detected; block and log index follow it when it moves
    block_number: int
    block_hash: str
    need: int  # confirmations
    addresses: list[str]
    generation: int = 1  # 2 and more: detected again after a revert
    doubt: bool = False


@dataclass
class Outbox:
    """Events of one advance, with their history records (aligned one-to-one)."""

    chain: str
    events: list[NewEvent] = field(default_factory=list)
    matches: list[MatchRecord] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, p: Pending) -> None:
        data = {**p.payload, "block_number": p.block_number, "block_hash": p.block_hash}
        # confirmed happens once per transfer whatever it went through; detected and reverted
        # once per generation, so a transfer that comes back after a revert is told again
        suffix = f":{p.generation}" if p.generation > 1 and kind != CONFIRMED else ""
        self.events.append(NewEvent(kind, data, f"{self.chain}:{p.key}:{kind}{suffix}"))
        self.matches.append(MatchRecord(p.monitor_id, kind, data["tx_hash"],
                                        tuple(p.addresses), p.block_number))
        self.counts[kind] += 1


@dataclass
class Cursor:
    next_block: int
    blocks: dict[int, str] = field(default_factory=dict)  # recent canonical blocks
    pending: dict[str, Pending] = field(default_factory=dict)
    recheck_until: int | None = None  # after a reorg: the old branch's last block
    reverted: dict[str, tuple[int, int]] = field(default_factory=dict)  # key → (gen, block)

    def window(self, confirmations: int) -> int:
        need = max((p.need for p in self.pending.values()), default=0)
        return max(MIN_WINDOW, 2 * confirmations, need + 1)

    def parent_ok(self, block: Block) -> bool:
        known = self.blocks.get(block.number - 1)
        return known is None or known == block.parent_hash

    def roll_back(self, ancestor: int, head: int) -> int:
        """Forget the blocks after `ancestor`; their matches wait to be seen again on the new
        branch, up to the node's `head` now (at least as far as the old branch went), and
        are reverted if they were not. Returns how many blocks were rolled back."""
        depth = self.next_block - 1 - ancestor
        self.recheck_until = max(self.recheck_until or 0, self.next_block - 1, head)
        self.blocks = {n: h for n, h in self.blocks.items() if n <= ancestor}
        for p in self.pending.values():
            if p.block_number > ancestor:
                p.doubt = True
        self.next_block = ancestor + 1
        return depth

    def apply(self, chain: str, block: Block, found: Sequence[tuple[Transfer, list[Match]]],
              index: MonitorIndex, default_confirmations: int, out: Outbox) -> None:
        """Process one block (the next, whose parent was checked)."""
        n = block.number
        self.blocks[n] = block.hash
        for transfer, matches in found:
            for monitor, direction in matches:
                key = _key(transfer, monitor.id)
                seen = self.pending.get(key)
                if seen is not None:  # on the new branch again, maybe in another block
                    seen.doubt, seen.block_number, seen.block_hash = False, n, block.hash
                    if seen.payload["log_index"] != transfer.log_index:  # replaced, not changed
                        seen.payload = {**seen.payload, "log_index": transfer.log_index}
                    continue
                need = (monitor.confirmations if monitor.confirmations is not None
                        else default_confirmations)
                generation = self.reverted.pop(key, (0, 0))[0] + 1
                p = Pending(key, monitor.id, _payload(chain, monitor, direction, transfer, need),
                            n, block.hash, need, list(watched(monitor, transfer, direction)),
                            generation)
                self.pending[key] = p
                out.add(DETECTED, p)
        if self.recheck_until is not None and n >= self.recheck_until:
            for p in [p for p in self.pending.values() if p.doubt]:
                del self.pending[p.key]
                self.reverted[p.key] = (p.generation, n)
                if p.monitor_id in index.monitors:
                    out.add(REVERTED, p)
            self.recheck_until = None
        for p in [p for p in self.pending.values() if not p.doubt and n >= p.block_number + p.need]:
            del self.pending[p.key]
            if p.monitor_id in index.monitors:  # a deleted or disabled monitor hears no more
                out.add(CONFIRMED, p)
        self.next_block = n + 1
        oldest = self.next_block - self.window(default_confirmations)
        if min(self.blocks) < oldest:
            self.blocks = {k: h for k, h in self.blocks.items() if k >= oldest}
            self.reverted = {k: v for k, v in self.reverted.items() if v[1] >= oldest}

    def copy(self) -> Cursor:
        """A working copy for one step; payloads and address lists are never changed in
        place, so they are shared."""
        return Cursor(self.next_block, dict(self.blocks),
                      {k: dataclasses.replace(p) for k, p in self.pending.items()},
                      self.recheck_until, dict(self.reverted))

    def to_json(self) -> dict[str, Any]:
        return {
            "version": CURSOR_VERSION,
            "next_block": self.next_block,
            "blocks": sorted(self.blocks.items()),
            "pending": [dict(vars(p)) for p in self.pending.values()],
            "recheck_until": self.recheck_until,
            "reverted": [[k, g, b] for k, (g, b) in self.reverted.items()],
        }

    @classmethod
    def from_json(cls, state: Mapping[str, Any]) -> Cursor:
        """Our own writing: a shape we do not know is a bug or a newer version, not data."""
        if state.get("version") != CURSOR_VERSION:
            raise ValueError(f"follower cursor version {state.get('version')!r} is unknown")
        pending = [Pending(**{**p, "addresses": list(p["addresses"])})
                   for p in state["pending"]]
        return cls(next_block=int(state["next_block"]),
                   blocks={int(n): str(h) for n, h in state["blocks"]},
                   pending={p.key: p for p in pending},
                   recheck_until=state.get("recheck_until"),
                   reverted={str(k): (int(g), int(b)) for k, g, b in state["reverted"]})


def _key(transfer: Transfer, monitor_id: str) -> str:
    return f"{transfer.key}:{monitor_id}"


def _payload(chain: str, monitor: Monitor, direction: str, t: Transfer,
             need: int) -> dict[str, Any]:
    token = t.category == "erc721"
    return {"chain": chain, "monitor_id": monitor.id, "tags": list(monitor.tags),
            "direction": direction, "category": t.category, "tx_hash": t.tx_hash,
            "block_number": t.block_number, "block_hash": t.block_hash,
            "log_index": t.log_index, "from": t.from_, "to": t.to, "contract": t.contract,
            "amount": None if token else str(t.value), "token_id": str(t.value) if token else None,
            "confirmations": need}
