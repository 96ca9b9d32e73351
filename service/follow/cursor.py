"""A chain follower's cursor: the next block to read, the recent canonical block hashes (to
see reorgs) and the state of every match (detected -> confirmed, or -> reverted by a reorg).
Pure: `ChainFollower` reads the node and the store, `Cursor.apply` decides what each block
means, and the whole cursor is saved (as JSON) with the events of each step.

Matches told confirmed stay in the cursor as long as their block is in the window of
recent blocks: a reorg deeper than the confirmations (a "deep" reorg) reaches them too. One
that left the chain is told `transfer.reverted` (with `was_confirmed`), one that moved is
told `transfer.confirmed` again, with its new block, once the new block has its
confirmations.

Event ids (idempotency keys) are `<chain>:<transfer key>:<monitor>:<kind>`, with `:<n>` for
the n-th detection or revert of a transfer that came back after a revert, and for its n-th
confirmation: a restart that processes a block again repeats the same ids, which the store
drops, while what the chain really did again gets an id of its own. Each event's data has a
`sequence`, counting the events of that transfer for that monitor: deliveries run in
parallel and retry, so receivers order by it, not by arrival.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chains.ethereum import Block
from service.follow.matching import Match, MonitorIndex, Transfer, watched
from service.models import MatchRecord, Monitor, NewEvent

DETECTED, CONFIRMED, REVERTED = "transfer.detected", "transfer.confirmed", "transfer.reverted"
KINDS = (DETECTED, CONFIRMED, REVERTED)
MIN_WINDOW = 64  # recent block hashes kept: the deepest reorg that is followed exactly
CURSOR_VERSION = 2  # 2: confirmed matches kept for deep reorgs, sequences, the start block


@dataclass
class Pending:
    """A match and what was told of it. `doubt`: its block was rolled back by a reorg and the
    new branch has not shown the transfer again yet."""

    key: str  # tx hash, log position in the tx or "native", monitor id
    monitor_id: str
    payload: dict[str, Any]  # as detected; block and log index follow it when it moves
    block_number: int
    block_hash: str
    need: int  # confirmations
    addresses: list[str]
    generation: int = 1  # 2 and more: detected again after a revert
    doubt: bool = False
    confirmed: int = 0  # transfer.confirmed events told (more than one: it moved)
    sequence: int = 0  # events told of this match, the last one's `sequence`


@dataclass(frozen=True)
class Reverted:
    """A match told reverted, remembered (while its block is in the window) so that coming
    back it is told with the next generation, confirmation and sequence numbers."""

    generation: int
    block_number: int
    confirmed: int
    sequence: int


@dataclass
class Outbox:
    """Events of one advance, with their history records (aligned one-to-one)."""

    chain: str
    events: list[NewEvent] = field(default_factory=list)
    matches: list[MatchRecord] = field(default_factory=list)

    def add(self, kind: str, p: Pending) -> None:
        p.sequence += 1
        data = {**p.payload, "block_number": p.block_number, "block_hash": p.block_hash,
                "sequence": p.sequence}
        if kind == CONFIRMED:
            p.confirmed += 1
            n = p.confirmed
        else:
            n = p.generation
        if kind == REVERTED:
            data["was_confirmed"] = p.confirmed > 0
        suffix = f":{n}" if n > 1 else ""
        self.events.append(NewEvent(kind, data, f"{self.chain}:{p.key}:{kind}{suffix}"))
        self.matches.append(MatchRecord(p.monitor_id, kind, data["tx_hash"],
                                        tuple(p.addresses), p.block_number))


@dataclass(frozen=True)
class RollBack:
    depth: int  # processed blocks rolled back
    confirmed: int  # matches told confirmed whose block was among them


@dataclass
class Cursor:
    next_block: int
    blocks: dict[int, str] = field(default_factory=dict)  # recent canonical blocks
    pending: dict[str, Pending] = field(default_factory=dict)
    recheck_until: int | None = None  # after a reorg: the old branch's last block
    reverted: dict[str, Reverted] = field(default_factory=dict)
    confirmed: dict[str, Pending] = field(default_factory=dict)  # told confirmed, in window
    start: int | None = None  # the block the follower first started at (None: not known)

    def window(self, confirmations: int) -> int:
        need = max((p.need for p in self.pending.values()), default=0)
        return max(MIN_WINDOW, 2 * confirmations, need + 1)

    def parent_ok(self, block: Block) -> bool:
        known = self.blocks.get(block.number - 1)
        return known is None or known == block.parent_hash

    def roll_back(self, ancestor: int, head: int) -> RollBack:
        """Forget the blocks after `ancestor`; their matches, confirmed ones included, wait
        to be seen again on the new branch, up to the node's `head` now (at least as far as
        the old branch went), and are reverted if they were not."""
        depth = self.next_block - 1 - ancestor
        self.recheck_until = max(self.recheck_until or 0, self.next_block - 1, head)
        self.blocks = {n: h for n, h in self.blocks.items() if n <= ancestor}
        for p in self.pending.values():
            if p.block_number > ancestor:
                p.doubt = True
        moved = [p for p in self.confirmed.values() if p.block_number > ancestor]
        for p in moved:
            del self.confirmed[p.key]
            p.doubt = True
            self.pending[p.key] = p
        self.next_block = ancestor + 1
        return RollBack(depth, len(moved))

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
                if key in self.confirmed:  # a transaction is in one canonical block only
                    continue
                need = (monitor.confirmations if monitor.confirmations is not None
                        else default_confirmations)
                before = self.reverted.pop(key, None)
                p = Pending(key, monitor.id, _payload(chain, monitor, direction, transfer, need),
                            n, block.hash, need, list(watched(monitor, transfer, direction)))
                if before is not None:
                    p.generation = before.generation + 1
                    p.confirmed, p.sequence = before.confirmed, before.sequence
                self.pending[key] = p
                out.add(DETECTED, p)
        if self.recheck_until is not None and n >= self.recheck_until:
            for p in [p for p in self.pending.values() if p.doubt]:
                del self.pending[p.key]
                told = p.monitor_id in index.monitors
                if told:  # a deleted or disabled monitor hears no more
                    out.add(REVERTED, p)
                self.reverted[p.key] = Reverted(p.generation, n, p.confirmed, p.sequence)
            self.recheck_until = None
        for p in [p for p in self.pending.values() if not p.doubt and n >= p.block_number + p.need]:
            del self.pending[p.key]
            if p.monitor_id in index.monitors:
                out.add(CONFIRMED, p)
                self.confirmed[p.key] = p
        self.next_block = n + 1
        oldest = self.next_block - self.window(default_confirmations)
        if min(self.blocks) < oldest:
            self.blocks = {k: h for k, h in self.blocks.items() if k >= oldest}
            self.reverted = {k: v for k, v in self.reverted.items() if v.block_number >= oldest}
            self.confirmed = {k: p for k, p in self.confirmed.items()
                              if p.block_number >= oldest}

    def copy(self) -> Cursor:
        """A working copy for one step; payloads and address lists are never changed in
        place, so they are shared."""
        return Cursor(self.next_block, dict(self.blocks),
                      {k: dataclasses.replace(p) for k, p in self.pending.items()},
                      self.recheck_until, dict(self.reverted),
                      {k: dataclasses.replace(p) for k, p in self.confirmed.items()},
                      self.start)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": CURSOR_VERSION,
            "next_block": self.next_block,
            "start": self.start,
            "blocks": sorted(self.blocks.items()),
            "pending": [dict(vars(p)) for p in self.pending.values()],
            "confirmed": [dict(vars(p)) for p in self.confirmed.values()],
            "recheck_until": self.recheck_until,
            "reverted": [[k, r.generation, r.block_number, r.confirmed, r.sequence]
                         for k, r in self.reverted.items()],
        }

    @classmethod
    def from_json(cls, state: Mapping[str, Any]) -> Cursor:
        """Our own writing: a shape we do not know is a bug or a newer version, not data.
        Version 1 (before confirmed matches were kept) reads as its matches having told
        detected (and reverted ones reverted) once."""
        version = state.get("version")
        if version not in (1, CURSOR_VERSION):
            raise ValueError(f"follower cursor version {version!r} is unknown")

        def pending(items: Sequence[Mapping[str, Any]]) -> dict[str, Pending]:
            found = [Pending(**{"sequence": 1, **p, "addresses": list(p["addresses"])})
                     for p in items]
            return {p.key: p for p in found}

        reverted = {str(k): Reverted(int(g), int(b), int(rest[0]) if rest else 0,
                                     int(rest[1]) if rest else 2)
                    for k, g, b, *rest in state["reverted"]}
        return cls(next_block=int(state["next_block"]),
                   blocks={int(n): str(h) for n, h in state["blocks"]},
                   pending=pending(state["pending"]),
                   recheck_until=state.get("recheck_until"),
                   reverted=reverted,
                   confirmed=pending(state.get("confirmed", ())),
                   start=state.get("start"))


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
