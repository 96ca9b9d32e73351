"""The chain follower against the scripted node of `sim`: detection, confirmation, retries and
backoff, restarts, reorgs, and a node on the wrong chain."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from service.follow.follower import (
    CONFIRMED,
    DETECTED,
    MAX_SPAN,
    REVERTED,
)
from service.models import MatchRecord
from tests.service.follow.sim import (
    ALICE,
    BOB,
    CAROL,
    NFT,
    TOKEN,
    Rig,
    catch_up,
    covered,
    monitor,
    native,
    tokens,
)
from tests.support.chain_nodes import (
    json_answer,
    text_answer,
)

pytestmark = pytest.mark.timeout(60)


# --- the follower ---------------------------------------------------------------------------


async def test_detected_then_confirmed_with_the_payload(rig: Rig) -> None:
    rig.store.put(monitor("m1", ALICE, tags=("hot",)), monitor("m5", BOB, confirmations=5))
    pay = native(BOB, ALICE, 10**18)
    coin = tokens(TOKEN, (ALICE, CAROL, 7))
    block = rig.chain.mine(pay, coin)
    follower = rig.follower()
    await catch_up(follower)
    assert rig.store.told() == [(DETECTED, pay.hash, "m5", block),  # from, then to
                                (DETECTED, pay.hash, "m1", block),
                                (DETECTED, coin.hash, "m1", block)]
    rig.chain.mine(blocks=2)
    await catch_up(follower)
    assert [(k, m) for k, _, m, _ in rig.store.told()[3:]] == [(CONFIRMED, "m1")] * 2
    rig.chain.mine(blocks=3)
    await catch_up(follower)
    assert [(k, m) for k, _, m, _ in rig.store.told()[5:]] == [(CONFIRMED, "m5")]
    detected, confirmed = rig.store.of(DETECTED)[1], rig.store.of(CONFIRMED)[0]
    block_hash = rig.chain.canonical[block]["hash"]
    assert detected == {
        "chain": "eth", "monitor_id": "m1", "tags": ["hot"], "direction": "in",
        "category": "native", "tx_hash": pay.hash, "block_number": block,
        "block_hash": block_hash, "log_index": None, "from": BOB, "to": ALICE,
        "contract": None, "amount": str(10**18), "token_id": None, "confirmations": 2,
        "sequence": 1}
    assert confirmed == {**detected, "sequence": 2}
    erc20 = rig.store.of(DETECTED)[2]
    assert (erc20["category"], erc20["direction"], erc20["contract"], erc20["amount"],
            erc20["log_index"]) == ("erc20", "out", TOKEN, "7", 0)
    keys = [e.idempotency_key for _, e in rig.store.events]
    assert keys[1] == f"eth:{pay.hash}:native:m1:transfer.detected"
    assert keys[-1] == f"eth:{pay.hash}:native:m5:transfer.confirmed"
    assert rig.store.matches[1] == MatchRecord("m1", DETECTED, pay.hash, (ALICE,), block)
    assert rig.metric("crypitor_follower_events_total", kind="detected") == 3
    assert rig.metric("crypitor_follower_events_total", kind="confirmed") == 3
    assert rig.metric("crypitor_follower_processed_block") == rig.chain.head
    assert rig.metric("crypitor_follower_lag_blocks") == 0


async def test_mixed_case_from_the_node_and_failed_transactions(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    shouting = "0x" + ALICE[2:].upper()
    ok, failed = native(BOB, shouting, 5), native(BOB, ALICE, 6, ok=False)
    rig.chain.mine(ok, failed, native(BOB, CAROL, 7), native(ALICE, BOB, 0))
    await catch_up(rig.follower())
    assert [d["tx_hash"] for d in rig.store.of(DETECTED)] == [ok.hash]
    assert rig.store.of(DETECTED)[0]["to"] == ALICE


async def test_zero_confirmations_and_disabled_or_deleted_monitors(rig: Rig) -> None:
    rig.store.put(monitor("m0", ALICE, confirmations=0), monitor("off", ALICE, enabled=False),
                  monitor("gone", ALICE))
    pay = native(BOB, ALICE, 5)
    rig.chain.mine(pay)
    follower = rig.follower()
    await catch_up(follower)
    assert [(k, m) for k, _, m, _ in rig.store.told()] == [
        (DETECTED, "m0"), (DETECTED, "gone"), (CONFIRMED, "m0")]
    rig.store.delete("gone")  # deleted before its confirmations: it hears nothing more
    rig.chain.mine(blocks=3)
    await catch_up(follower)
    assert len(rig.store.events) == 3 and rig.store.advances[-1]["pending"] == []


async def test_first_start_at_the_head_and_saved_at_once(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    rig.chain.mine(native(BOB, ALICE, 5))
    head = rig.chain.mine(blocks=3)
    follower = rig.follower(start_block=None)
    result = await follower.step()
    assert rig.store.advances[0] == {"version": 2, "next_block": head, "start": head,
                                     "blocks": [], "pending": [], "confirmed": [],
                                     "recheck_until": None, "reverted": []}
    assert result.next_block == head + 1 and rig.store.events == []  # block `head` processed


async def test_errors_and_garbage_are_retried_and_nothing_is_skipped(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    pays = [native(BOB, ALICE, i + 1) for i in range(6)]
    for pay in pays[:3]:
        rig.chain.mine(pay)
    follower = rig.follower()
    await catch_up(follower)
    rig.chain.faults = [
        text_answer("<h1>502 Bad Gateway</h1>", status=502),
        text_answer("<html>rate limited</html>"),
        # a null id, as a node answering an error may send; -32005 would be a rate limit
        json_answer({"jsonrpc": "2.0", "id": None,
                     "error": {"code": -32000, "message": "header not found"}}),
        json_answer({"jsonrpc": "2.0", "id": 1, "result": "0xnothex"}),
        json_answer({"jsonrpc": "2.0", "id": 1, "result": None}),  # no head at all
    ]
    for pay in pays[3:]:
        rig.chain.mine(pay)
    saved = len(rig.store.advances)
    results = [await follower.step() for _ in range(5)]
    assert all(r.error for r in results) and len(rig.store.advances) == saved
    # then a node whose head runs ahead of its blocks (a load balancer): lag, not a failure;
    # asked again, not skipped
    rig.chain.head_ahead = 2
    for _ in range(10):  # the failures above shrank the batch: a few steps to reach the head
        result = await follower.step()
        assert not result.error
        if result.not_ready:
            break
    assert result.not_ready.startswith("block_missing")
    assert covered(rig.store)[-1] == rig.chain.head + 1  # up to the real head, not beyond
    rig.chain.head_ahead = 0
    await catch_up(follower)
    assert [d["tx_hash"] for d in rig.store.of(DETECTED)] == [p.hash for p in pays]
    path = covered(rig.store)
    assert path == sorted(path) and path[-1] == rig.chain.head + 1
    errors = {k: rig.metric("crypitor_follower_rpc_errors_total", kind=k)
              for k in ("http_status", "malformed", "rpc_error", "missing_block")}
    assert errors == {"http_status": 1, "malformed": 3, "rpc_error": 1, "missing_block": 0}
    assert rig.metric("crypitor_follower_not_ready_total", reason="block_missing") == 1


async def test_garbage_inside_a_batch_is_an_error_too(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    rig.chain.mine(native(BOB, ALICE, 5))
    follower = rig.follower()
    real = rig.chain.answer

    def broken(method: str, params: list[Any]) -> Any:
        answer = real(method, params)
        if method == "eth_getBlockByNumber" and answer is not None:
            answer["transactions"] = [{"hash": "0x12"}]
        return answer

    rig.chain.answer = broken  # type: ignore[method-assign]
    result = await follower.step()
    assert result.error_kind == "malformed" and rig.store.events == []
    rig.chain.answer = real  # type: ignore[method-assign]
    await catch_up(follower)
    assert len(rig.store.of(DETECTED)) == 1


async def test_run_backs_off_and_recovers(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    pay = native(BOB, ALICE, 5)
    rig.chain.mine(pay)
    rig.chain.faults = [text_answer("down", status=503)] * 4
    task = asyncio.create_task(rig.follower().run())
    try:
        async with asyncio.timeout(20):
            while not rig.store.of(DETECTED):
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert rig.metric("crypitor_follower_rpc_errors_total", kind="http_status") == 4


async def test_catches_up_in_bounded_contiguous_batches(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    pays = [native(BOB, ALICE, i + 1) for i in range(120)]
    for pay in pays:
        rig.chain.mine(pay)
    follower = rig.follower()
    await catch_up(follower)
    path = covered(rig.store)
    assert path[0] == 1 and all(0 < b - a <= MAX_SPAN for a, b in itertools.pairwise(path))
    assert [d["tx_hash"] for d in rig.store.of(DETECTED)] == [p.hash for p in pays]


async def test_store_failure_does_not_move_the_cursor(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    follower = rig.follower()
    await catch_up(follower)
    pay = native(BOB, ALICE, 5)
    rig.chain.mine(pay)
    rig.store.fail_advances = 2
    assert (await follower.step()).error_kind == "store"
    assert (await follower.step()).error_kind == "store"
    await catch_up(follower)
    assert [d["tx_hash"] for d in rig.store.of(DETECTED)] == [pay.hash]
    assert rig.metric("crypitor_follower_store_errors_total") == 2


async def test_restart_resumes_with_pending_confirmations(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    first = rig.follower()
    a = native(BOB, ALICE, 1)
    rig.chain.mine(a)
    await catch_up(first)
    b = native(BOB, ALICE, 2)
    rig.chain.mine(b, blocks=1)
    rig.chain.mine(blocks=1)
    second = rig.follower(start_block=None)  # the cursor wins over the config
    await catch_up(second)
    rig.chain.mine(blocks=3)
    await catch_up(second)
    assert sorted((k, tx) for k, tx, _, _ in rig.store.told()) == sorted(
        [(DETECTED, a.hash), (DETECTED, b.hash), (CONFIRMED, a.hash), (CONFIRMED, b.hash)])
    third = rig.follower()
    await catch_up(third)
    assert len(rig.store.events) == 4


async def test_reorg_reverts_moves_and_confirms_once(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    follower = rig.follower(confirmations=3)
    base = rig.chain.mine(blocks=2)
    await catch_up(follower)
    orphan, moved, stays = native(BOB, ALICE, 1), native(BOB, ALICE, 2), native(BOB, ALICE, 3)
    rig.chain.mine(stays)
    rig.chain.mine(orphan, moved)
    await catch_up(follower)
    assert len(rig.store.of(DETECTED)) == 3
    rig.chain.fork(after=base + 1)  # the block with `orphan` and `moved` is replaced
    rig.chain.mine(blocks=1)
    new_block = rig.chain.mine(moved)
    rig.chain.mine(blocks=1)
    results = await catch_up(follower)
    assert any(r.reorg_depth == 1 for r in results)
    assert rig.metric("crypitor_follower_reorgs_total") == 1
    assert [tx for k, tx, _, _ in rig.store.told() if k == REVERTED] == [orphan.hash]
    rig.chain.mine(blocks=5)
    await catch_up(follower)
    told = rig.store.told()
    confirmed = [(tx, block) for k, tx, _, block in told if k == CONFIRMED]
    assert sorted(confirmed) == sorted([(stays.hash, base + 1), (moved.hash, new_block)])
    assert (REVERTED, orphan.hash) in [(k, tx) for k, tx, _, _ in told]
    assert [k for k, tx, _, _ in told if tx == moved.hash] == [DETECTED, CONFIRMED]
    final = next(d for d in rig.store.of(CONFIRMED) if d["tx_hash"] == moved.hash)
    assert final["block_hash"] == rig.chain.canonical[new_block]["hash"]


async def test_a_token_transfer_moved_to_another_log_index_is_the_same_transfer(
        rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    follower = rig.follower(confirmations=2)
    base = rig.chain.mine(blocks=1)
    await catch_up(follower)
    coin = tokens(TOKEN, (BOB, CAROL, 1), (BOB, ALICE, 2))  # ours is the tx's second log
    rig.chain.mine(coin)
    await catch_up(follower)
    rig.chain.fork(after=base)
    rig.chain.mine(tokens(NFT, (BOB, CAROL, 9)), coin)  # now behind another tx's log
    rig.chain.mine(blocks=2)
    await catch_up(follower)
    assert [k for k, _, _, _ in rig.store.told()] == [DETECTED, CONFIRMED]
    detected, confirmed = rig.store.of(DETECTED)[0], rig.store.of(CONFIRMED)[0]
    assert (detected["log_index"], confirmed["log_index"]) == (1, 2)
    assert confirmed["block_hash"] == rig.chain.canonical[base + 1]["hash"]


async def test_a_reverted_transfer_mined_again_is_detected_again(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    follower = rig.follower(confirmations=2)
    base = rig.chain.mine(blocks=1)
    await catch_up(follower)
    pay = native(BOB, ALICE, 1)
    rig.chain.mine(pay)
    await catch_up(follower)
    rig.chain.fork(after=base)
    rig.chain.mine(blocks=2)
    await catch_up(follower)
    rig.chain.mine(pay)  # back from the mempool, later than the old branch reached
    rig.chain.mine(blocks=2)
    await catch_up(follower)
    assert [k for k, _, _, _ in rig.store.told()] == [DETECTED, REVERTED, DETECTED, CONFIRMED]
    keys = [e.idempotency_key or "" for _, e in rig.store.events]
    assert keys[2].endswith("transfer.detected:2") and keys[3].endswith("transfer.confirmed")


async def test_reorg_found_after_a_restart_and_a_node_that_went_back(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    base = rig.chain.mine(blocks=1)
    pay = native(BOB, ALICE, 1)
    rig.chain.mine(pay)
    await catch_up(rig.follower())
    rig.chain.fork(after=base)  # the node is now behind the cursor: nothing to do yet
    follower = rig.follower()
    assert not (await follower.step()).error and len(rig.store.events) == 1
    rig.chain.mine(blocks=3)
    await catch_up(follower)
    assert [k for k, _, _, _ in rig.store.told()] == [DETECTED, REVERTED]


async def test_wrong_chain_is_refused(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    rig.chain.mine(native(BOB, ALICE, 1))
    follower = rig.follower(chain_id=1)
    result = await follower.step()
    assert result.error_kind == "chain_id" and "1337" in result.error
    assert rig.store.advances == []
    assert rig.metric("crypitor_follower_rpc_errors_total", kind="chain_id") == 1


async def test_a_reorg_deeper_than_the_window_resumes_at_its_start(rig: Rig) -> None:
    rig.store.put(monitor("m", ALICE))
    follower = rig.follower(confirmations=2)
    rig.chain.mine(blocks=80)
    await catch_up(follower)
    kept = rig.store.advances[-1]["blocks"]
    saved = len(rig.store.advances)
    rig.chain.fork(after=0)  # every block kept is replaced
    rig.chain.mine(blocks=90)
    results = await catch_up(follower)
    assert any(r.reorg_depth == len(kept) for r in results)
    oldest = kept[0][0]  # what came before it is taken as common: nothing more is known
    assert rig.store.advances[saved]["next_block"] == oldest + MAX_SPAN
    assert covered(rig.store)[-1] == rig.chain.head + 1
    assert rig.store.advances[-1]["blocks"][-1][1] == rig.chain.canonical[-1]["hash"]

