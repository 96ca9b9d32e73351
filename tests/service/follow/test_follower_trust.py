"""What issue 13 asked of the follower, on the scripted node: an empty logs answer that the
block contradicts is asked again, a deep reorg revisits confirmed transfers, a parent hash
the chain does not confirm is no reorg, a lagging node is waited for briefly, events carry a
sequence and are counted once, an ignored start_block is said.
"""

from __future__ import annotations

import logging

import pytest

from service.follow.cursor import Cursor
from service.follow.follower import (
    CONFIRMED,
    DETECTED,
    NOT_READY_POLLS,
    REVERTED,
    StepResult,
)
from tests.service.follow.sim import (
    ALICE,
    BOB,
    CAROL,
    TOKEN,
    Rig,
    catch_up,
    monitor,
    native,
    tokens,
)


async def test_an_empty_logs_answer_the_bloom_contradicts_is_asked_again(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    follower = rig.follower(confirmations=1)
    await catch_up(follower)
    coins = [tokens(TOKEN, (BOB, ALICE, i + 1)) for i in range(3)]
    for coin in coins:
        rig.chain.mine(coin)
    rig.chain.lose_logs = 3  # a backend that does not know the blocks yet
    await catch_up(follower)
    assert [d["tx_hash"] for d in rig.store.of(DETECTED)] == [c.hash for c in coins]
    # the three blocks' logs came in one batch: one step was not believed
    assert rig.metric("crypitor_follower_not_ready_total", reason="logs_contradicted") == 1
    assert rig.metric("crypitor_follower_rpc_errors_total", kind="malformed") == 0


async def test_an_empty_answer_for_a_block_without_watched_transfers_is_believed(
        rig: Rig) -> None:
    """Blocks whose bloom names no watched address (or no Transfer at all) need no second
    look, so a node without the bug costs nothing more."""
    rig.store.put(monitor("m", ALICE))
    follower = rig.follower(confirmations=1)
    await catch_up(follower)
    rig.chain.mine(tokens(TOKEN, (BOB, CAROL, 5)))  # a Transfer, but between strangers
    rig.chain.mine(native(BOB, CAROL, 5))
    rig.chain.lose_logs = 2
    requests = rig.chain.requests
    await catch_up(follower)
    assert rig.store.events == []
    assert rig.metric("crypitor_follower_not_ready_total", reason="logs_contradicted") == 0
    assert rig.chain.requests - requests <= 4  # head, blocks, logs: no receipts asked


async def test_a_reorg_deeper_than_the_confirmations_revisits_confirmed_transfers(
        rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    follower = rig.follower(confirmations=2)
    base = rig.chain.mine(blocks=2)
    await catch_up(follower)
    gone, moved = native(BOB, ALICE, 1), tokens(TOKEN, (BOB, ALICE, 2))
    block = rig.chain.mine(gone, moved)
    rig.chain.mine(blocks=3)
    await catch_up(follower)
    assert sorted(k for k, *_ in rig.store.told()) == [CONFIRMED, CONFIRMED, DETECTED, DETECTED]
    rig.chain.fork(after=base)  # 4 blocks replaced: deeper than 2 confirmations
    rig.chain.mine(blocks=2)
    new_block = rig.chain.mine(moved)
    rig.chain.mine(blocks=3)
    await catch_up(follower)
    assert rig.metric("crypitor_follower_deep_reorgs_total") == 1
    assert rig.metric("crypitor_follower_reorgs_total") == 1
    told = rig.store.told()[4:]  # the revert waits until the new branch passed the old head
    assert told == [(CONFIRMED, moved.hash, "m", new_block), (REVERTED, gone.hash, "m", block)]
    reverted = rig.store.of(REVERTED)[0]
    assert reverted["was_confirmed"] is True and reverted["sequence"] == 3
    first, again = rig.store.of(CONFIRMED)[1], rig.store.of(CONFIRMED)[2]
    assert first["tx_hash"] == again["tx_hash"] == moved.hash
    assert (first["block_number"], again["block_number"]) == (block, new_block)
    assert again["block_hash"] == rig.chain.canonical[new_block]["hash"]
    assert (first["sequence"], again["sequence"]) == (2, 3)
    keys = [e.idempotency_key for _, e in rig.store.events if e.type == CONFIRMED
            and e.data["tx_hash"] == moved.hash]
    assert keys == [f"eth:{moved.hash}:0:m:transfer.confirmed",
                    f"eth:{moved.hash}:0:m:transfer.confirmed:2"]
    # the chain goes on: nothing more is told of either
    rig.chain.mine(blocks=70)
    await catch_up(follower)
    assert len(rig.store.events) == 6


async def test_a_shallow_reorg_of_unconfirmed_transfers_is_not_deep(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    follower = rig.follower(confirmations=3)
    base = rig.chain.mine(blocks=1)
    await catch_up(follower)
    orphan = native(BOB, ALICE, 1)
    rig.chain.mine(orphan)
    await catch_up(follower)
    rig.chain.fork(after=base)
    rig.chain.mine(blocks=4)
    await catch_up(follower)
    assert rig.metric("crypitor_follower_reorgs_total") == 1
    assert rig.metric("crypitor_follower_deep_reorgs_total") == 0
    (reverted,) = rig.store.of(REVERTED)
    assert reverted["was_confirmed"] is False and reverted["sequence"] == 2


async def test_a_forged_parent_hash_is_no_reorg(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    follower = rig.follower(confirmations=1)
    rig.chain.mine(blocks=1)
    await catch_up(follower)
    pays = []
    for i in range(5):
        pays.append(native(BOB, ALICE, i + 1))
        rig.chain.mine(pays[-1])
        rig.chain.forge_parent = 1  # the next answer for the head block lies about its parent
        await catch_up(follower)
    rig.chain.mine(blocks=1)
    await catch_up(follower)
    assert rig.metric("crypitor_follower_reorgs_total") == 0
    assert rig.metric("crypitor_follower_not_ready_total", reason="parent_mismatch") == 5
    assert [tx for k, tx, *_ in rig.store.told() if k == CONFIRMED] == [p.hash for p in pays]
    assert rig.store.of(REVERTED) == []


def test_waiting_for_a_lagging_node_stays_within_a_few_poll_intervals(rig: Rig) -> None:
    follower = rig.follower(poll_interval=2.0)
    waits = [follower._delay(StepResult(0, 1, not_ready="block_missing: x"))
             for _ in range(12)]
    assert waits[:3] == [2.0, 4.0, 8.0] and max(waits) == 2.0 * NOT_READY_POLLS
    assert follower._delay(StepResult(5, 6)) == 2.0  # agreed again: the plain poll
    failures = [follower._delay(StepResult(error="down", error_kind="refused"))
                for _ in range(8)]
    assert failures[-1] == 30.0  # failures back off further
    assert follower._delay(StepResult(error="slow down", error_kind="rate_limited",
                                      retry_after=90.0)) == 90.0


async def test_events_already_in_the_queue_are_not_counted_again(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    follower = rig.follower(confirmations=1)
    await catch_up(follower)
    rig.chain.mine(native(BOB, ALICE, 1))
    saved = dict(rig.store.advances[-1])
    rig.chain.mine(blocks=1)
    await catch_up(follower)
    assert rig.metric("crypitor_follower_events_total", kind="detected") == 1
    assert rig.metric("crypitor_follower_events_total", kind="confirmed") == 1
    # a restart from an older cursor (say a write the process never learnt had happened)
    rig.store.cursors["chain:eth"] = __import__("json").dumps(saved)
    await catch_up(rig.follower(confirmations=1))
    assert len(rig.store.events) == 2  # the same ids: nothing enqueued again
    assert rig.metric("crypitor_follower_events_total", kind="detected") == 1
    assert rig.metric("crypitor_follower_events_total", kind="confirmed") == 1


async def test_a_changed_start_block_is_said_to_be_ignored(
        rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    rig.chain.mine(blocks=5)
    await catch_up(rig.follower(start_block=2))
    with caplog.at_level(logging.INFO, "crypitor.service.follower"):
        await catch_up(rig.follower(start_block=2))
        assert "is ignored" not in caplog.text
        await catch_up(rig.follower(start_block=1))
    (line,) = [r.getMessage() for r in caplog.records if "is ignored" in r.getMessage()]
    assert "start_block = 1 is ignored" in line and "began at block 2" in line
    assert "delete the cursor" in line


def test_a_version_1_cursor_reads_as_told_once() -> None:
    old = {"version": 1, "next_block": 10, "blocks": [[9, "0x09"]],
           "pending": [{"key": "0xaa:native:m", "monitor_id": "m", "payload": {},
                        "block_number": 9, "block_hash": "0x09", "need": 3,
                        "addresses": ["0x01"], "generation": 1, "doubt": False}],
           "recheck_until": None, "reverted": [["0xbb:native:m", 1, 8]]}
    cursor = Cursor.from_json(old)
    pending = cursor.pending["0xaa:native:m"]
    assert (pending.sequence, pending.confirmed) == (1, 0)
    reverted = cursor.reverted["0xbb:native:m"]
    assert (reverted.generation, reverted.confirmed, reverted.sequence) == (1, 0, 2)
    assert cursor.confirmed == {} and cursor.start is None
    assert Cursor.from_json(cursor.to_json()) == cursor
    with pytest.raises(ValueError, match="version 3"):
        Cursor.from_json({**old, "version": 3})
