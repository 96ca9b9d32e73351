"""The store contract (see `contract`): address monitors, chain followers' cursors with
their leases and fenced `advance`, and each monitor's history.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from service import CursorTaken
from service.models import MonitorEvent, NewEvent
from service.store import Store
from tests.service.store.contract import S, monitor, transfer
from tests.support.stores import NOW, StoreFactory, endpoint

pytestmark = pytest.mark.timeout(30)


async def test_monitors_round_trip_in_creation_order(store: Store) -> None:
    assert (await store.monitors_version(), await store.list_monitors()) == (0, [])
    big = monitor("mon_big", *(f"0x{i:040x}" for i in range(100_000)))
    other = dataclasses.replace(monitor("mon_poly", chain="polygon"), confirmations=None,
                                contracts=frozenset(), tags=(), created_at=None)
    await store.put_monitor(monitor("mon_a"))
    await store.put_monitor(big)
    await store.put_monitor(other)
    assert await store.get_monitor("mon_big") == big
    assert await store.get_monitor("mon_poly") == other
    assert await store.get_monitor("mon_nope") is None
    assert [m.id for m in await store.list_monitors()] == ["mon_a", "mon_big", "mon_poly"]
    assert [m.id for m in await store.list_monitors("polygon")] == ["mon_poly"]
    assert await store.list_monitors("bitcoin") == await store.list_monitors("") == []
    version = await store.monitors_version()
    assert version >= 3

    changed = dataclasses.replace(monitor("mon_a", f"0x{9:040x}"), enabled=False)
    await store.put_monitor(changed)  # a replacement keeps its place in the listing
    assert await store.monitors_version() > version
    assert (await store.list_monitors())[0] == changed
    version = await store.monitors_version()
    assert await store.delete_monitor("mon_a") is True
    assert await store.monitors_version() > version
    version = await store.monitors_version()
    assert await store.delete_monitor("mon_a") is False
    assert await store.monitors_version() == version  # nothing changed
    assert [m.id for m in await store.list_monitors()] == ["mon_big", "mon_poly"]


async def test_replace_monitor_writes_only_over_the_revision_it_read(store: Store) -> None:
    """Compare-and-set for PATCH: of two processes that read the same monitor, the second
    to write back is refused, and so is a write back over a deleted monitor."""
    await store.put_monitor(monitor("mon_a"))
    read = await store.get_monitor("mon_a")
    assert read is not None and read.revision >= 1
    mine = dataclasses.replace(read, addresses=read.addresses | {f"0x{7:040x}"})
    theirs = dataclasses.replace(read, addresses=read.addresses | {f"0x{8:040x}"})
    version = await store.monitors_version()
    assert await store.replace_monitor(theirs) is True
    assert await store.monitors_version() > version
    version = await store.monitors_version()
    assert await store.replace_monitor(mine) is False  # stale: read before theirs was written
    assert await store.monitors_version() == version
    now = await store.get_monitor("mon_a")
    assert now == theirs and now is not None and now.revision > read.revision
    assert [m.revision for m in await store.list_monitors()] == [now.revision]
    again = dataclasses.replace(now, addresses=now.addresses | {f"0x{7:040x}"})
    assert await store.replace_monitor(again) is True  # read afresh: written
    assert (await store.get_monitor("mon_a")) == again
    await store.put_monitor(monitor("mon_a"))  # an unconditional write moves it on too
    assert await store.replace_monitor(again) is False
    current = await store.get_monitor("mon_a")
    assert current is not None and await store.delete_monitor("mon_a")
    assert await store.replace_monitor(current) is False  # no resurrection
    assert await store.get_monitor("mon_a") is None


async def test_cursor_is_none_until_advance_saves_it(store: Store) -> None:
    assert await store.get_cursor("ethereum") is None
    assert await store.advance("ethereum", {"block": 7, "hashes": ["0xaa"]}, [], [], NOW) == []
    assert await store.get_cursor("ethereum") == {"block": 7, "hashes": ["0xaa"]}
    await store.advance("ethereum", {"block": 8}, [], [], NOW)
    assert await store.get_cursor("ethereum") == {"block": 8}
    assert await store.get_cursor("polygon") is None
    with pytest.raises(ValueError, match="1 events but 0 matches"):
        await store.advance("ethereum", {"block": 9}, [NewEvent("t", 1)], [], NOW)
    assert await store.get_cursor("ethereum") == {"block": 8}


async def test_advance_delivers_only_to_the_monitors_endpoint(store: Store) -> None:
    for ep in (endpoint("ep_a"), endpoint("ep_b"), endpoint("ep_all")):
        await store.put_endpoint(ep)
    await store.put_monitor(monitor("mon_a", endpoint_id="ep_a"))
    await store.put_monitor(monitor("mon_b", endpoint_id="ep_b"))
    await store.put_monitor(monitor("mon_off", endpoint_id="ep_a", enabled=False))
    steps = [transfer("mon_a", 1, 1), transfer("mon_b", 2, 2), transfer("mon_off", 3, 1),
             transfer("mon_gone", 4, 1)]
    stored = await store.advance("ethereum", {"block": 100}, [e for e, _ in steps],
                                 [m for _, m in steps], NOW)
    assert all(s.new for s in stored)
    ids = [s.id for s in stored]
    assert len(set(ids)) == 4
    assert [d.event_id for d in await store.deliveries_of("ep_a")] == [ids[0]]
    assert [d.event_id for d in await store.deliveries_of("ep_b")] == [ids[1]]
    assert await store.deliveries_of("ep_all") == []  # never another customer's transfers
    for event_id, (event, _) in zip(ids, steps, strict=True):
        view = await store.get_event(event_id)  # stored, delivered or not
        assert view is not None and view.event.data == event.data
        assert view.event.idempotency_key == event.idempotency_key
    (entry,) = await store.monitor_events("mon_off")
    assert entry.match == steps[2][1]
    assert [c.event.id for c in await store.claim(10, NOW, 30)] == ids[:2]


async def test_advance_again_returns_the_first_ids_and_adds_nothing(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    await store.put_monitor(monitor("mon_a"))
    steps = [transfer("mon_a", 1, 1), transfer("mon_a", 2, 2)]
    events, matches = [e for e, _ in steps], [m for _, m in steps]
    first = await store.advance("ethereum", {"block": 100}, events, matches, NOW)
    assert [s.new for s in first] == [True, True]
    ids = [s.id for s in first]
    history = await store.monitor_events("mon_a")
    # a re-processed block, and one event twice in one step: nothing new anywhere
    again = await store.advance("ethereum", {"block": 101}, [*events, events[0]],
                                [*matches, matches[0]], NOW + S)
    assert again == [(i, False) for i in [*ids, ids[0]]]
    assert await store.monitor_events("mon_a") == history
    assert len(await store.deliveries_of("ep_a")) == 2
    assert await store.get_cursor("ethereum") == {"block": 101}
    # one step with a new event twice: only its first is new
    new = transfer("mon_a", 3, 3)
    twice = await store.advance("ethereum", {"block": 102}, [new[0], new[0]],
                                [new[1], new[1]], NOW + S)
    assert [s.new for s in twice] == [True, False] and twice[0].id == twice[1].id


async def test_one_holder_at_a_time_holds_a_cursor_lease(store: Store) -> None:
    assert await store.hold_cursor("chain:eth", "proc-a", 30)
    assert await store.hold_cursor("chain:eth", "proc-a", 30)  # renewed
    assert not await store.hold_cursor("chain:eth", "proc-b", 30)
    assert await store.hold_cursor("chain:polygon", "proc-b", 30)  # leases are per cursor
    await store.let_go_cursor("chain:eth", "proc-b")  # not its lease: nothing happens
    assert not await store.hold_cursor("chain:eth", "proc-b", 30)
    await store.let_go_cursor("chain:eth", "proc-a")
    assert await store.hold_cursor("chain:eth", "proc-b", 30)
    assert not await store.hold_cursor("chain:eth", "proc-a", 30)


async def test_a_lease_that_is_not_renewed_runs_out(store: Store) -> None:
    assert await store.hold_cursor("chain:eth", "proc-a", 0.2)
    assert not await store.hold_cursor("chain:eth", "proc-b", 0.2)
    await asyncio.sleep(0.35)  # proc-a died: it renews nothing
    assert await store.hold_cursor("chain:eth", "proc-b", 30)
    assert not await store.hold_cursor("chain:eth", "proc-a", 30)


async def test_advance_is_fenced_by_the_cursor_lease(store: Store) -> None:
    """A process that lost the lease without noticing writes nothing: neither cursor, nor
    events, nor history."""
    await store.put_endpoint(endpoint("ep_a"))
    await store.put_monitor(monitor("mon_a"))
    event, match = transfer("mon_a", 1, 1)
    assert await store.hold_cursor("ethereum", "proc-a", 0.2)
    await store.advance("ethereum", {"block": 1}, [], [], NOW, holder="proc-a")
    await asyncio.sleep(0.35)
    assert await store.hold_cursor("ethereum", "proc-b", 30)
    await store.advance("ethereum", {"block": 5}, [], [], NOW, holder="proc-b")
    with pytest.raises(CursorTaken):
        await store.advance("ethereum", {"block": 2}, [event], [match], NOW, holder="proc-a")
    with pytest.raises(CursorTaken):  # nobody holds it: no write either
        await store.advance("polygon", {"block": 2}, [event], [match], NOW, holder="proc-a")
    assert await store.get_cursor("ethereum") == {"block": 5}
    assert await store.get_cursor("polygon") is None
    assert await store.monitor_events("mon_a") == []
    assert await store.deliveries_of("ep_a") == []
    ids = [s.id for s in await store.advance("ethereum", {"block": 6}, [event], [match], NOW,
                                             holder="proc-b")]
    assert [d.event_id for d in await store.deliveries_of("ep_a")] == ids


async def test_monitor_events_newest_first_filtered_by_tx_and_address(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    await store.put_monitor(monitor("mon_a"))
    steps = [transfer("mon_a", 1, 1), transfer("mon_a", 1, 1, 2, kind="transfer.confirmed",
                                                  block=103),
             transfer("mon_a", 2, 2), transfer("mon_b", 1, 1)]
    ids = []
    for i, (event, match) in enumerate(steps):  # one step each: a clear order
        ids += [s.id for s in await store.advance("ethereum", {"block": i}, [event], [match],
                                                  NOW + i * S)]
    newest = (await store.monitor_events("mon_a"))[0]
    assert (newest.match, newest.event_id, newest.event_type, newest.accepted_at,
            newest.data) == (steps[2][1], ids[2], "transfer.detected", NOW + 2 * S,
                             steps[2][0].data)

    def found(entries: list[MonitorEvent]) -> list[str]:
        return [e.event_id for e in entries]
    tx1, a1, a2 = f"0X{1:064X}", f"0x{1:040X}", f"0x{2:040x}"  # either case finds them
    assert found(await store.monitor_events("mon_a")) == [ids[2], ids[1], ids[0]]
    assert found(await store.monitor_events("mon_a", limit=2)) == [ids[2], ids[1]]
    assert found(await store.monitor_events("mon_a", limit=0)) == []
    assert found(await store.monitor_events("mon_a", tx_hash=tx1)) == [ids[1], ids[0]]
    assert found(await store.monitor_events("mon_a", tx_hash=tx1, limit=1)) == [ids[1]]
    assert found(await store.monitor_events("mon_a", address=a1)) == [ids[1], ids[0]]
    assert found(await store.monitor_events("mon_a", address=a2)) == [ids[2], ids[1]]
    assert found(await store.monitor_events("mon_a", address=a2, limit=1)) == [ids[2]]
    assert found(await store.monitor_events("mon_a", tx_hash=tx1, address=a2)) == [ids[1]]
    assert found(await store.monitor_events("mon_a", f"0x{3:064x}")) == []
    assert found(await store.monitor_events("mon_a", address=f"0x{3:040x}")) == []
    assert found(await store.monitor_events("mon_b")) == [ids[3]]
    assert await store.monitor_events("mon_nope") == []
    confirmed = (await store.monitor_events("mon_a", tx_hash=tx1))[0]
    assert confirmed.match == steps[1][1] and confirmed.event_type == "transfer.confirmed"
    assert confirmed.accepted_at == NOW + S


async def test_monitor_events_page_by_page_with_before(store: Store) -> None:
    await store.put_endpoint(endpoint("ep_a"))
    await store.put_monitor(monitor("mon_a"))
    await store.put_monitor(monitor("mon_b"))
    # one event each (its own kind keeps the idempotency keys apart); tx and addresses repeat
    steps = [transfer("mon_a", 1 + i % 2, 1 + i % 3, kind=f"k{i}", block=100 + i)
             for i in range(7)]
    ids = []
    for i, (event, match) in enumerate(steps):
        ids += [s.id for s in await store.advance("ethereum", {"block": i}, [event], [match],
                                                  NOW + i * S)]
    theirs, their_match = transfer("mon_b", 1, 1)
    other = [s.id for s in await store.advance("ethereum", {"block": 9}, [theirs],
                                               [their_match], NOW + 9 * S)]

    async def pages(size: int, **filters: str) -> list[list[str]]:
        out: list[list[str]] = []
        before = None
        while True:
            page = [e.event_id for e in await store.monitor_events(
                "mon_a", limit=size, before=before, **filters)]
            if not page:
                return out
            out.append(page)
            before = page[-1]

    newest_first = ids[::-1]
    assert await pages(3) == [newest_first[0:3], newest_first[3:6], newest_first[6:]]
    tx1 = f"0x{1:064x}"  # transfers 0, 2, 4, 6
    assert await pages(2, tx_hash=tx1) == [[ids[6], ids[4]], [ids[2], ids[0]]]
    a1 = f"0x{1:040x}"  # transfers 0, 3, 6
    assert await pages(1, address=a1) == [[ids[6]], [ids[3]], [ids[0]]]
    assert await pages(5, tx_hash=tx1, address=a1) == [[ids[6], ids[0]]]
    assert await store.monitor_events("mon_a", before=ids[0]) == []  # the oldest: nothing
    for stranger in (other[0], "evt_" + "0" * 16, "nonsense"):
        with pytest.raises(ValueError, match="not in the history of mon_a"):
            await store.monitor_events("mon_a", before=stranger)


async def test_endpoint_monitors_names_who_sends_there(store: Store) -> None:
    for ep in (endpoint("ep_a"), endpoint("ep_b")):
        await store.put_endpoint(ep)
    for i in range(4):
        await store.put_monitor(monitor(f"mon_{i}", endpoint_id="ep_a" if i != 2 else "ep_b"))
    assert await store.endpoint_monitors("ep_a") == ["mon_0", "mon_1", "mon_3"]
    assert await store.endpoint_monitors("ep_a", 2) == ["mon_0", "mon_1"]
    assert await store.endpoint_monitors("ep_b") == ["mon_2"]
    assert await store.endpoint_monitors("ep_none") == []
    await store.delete_monitor("mon_2")
    assert await store.endpoint_monitors("ep_b") == []


async def test_monitors_cursor_and_history_survive_a_reopen(
        store_factory: StoreFactory) -> None:
    first = store_factory()
    await first.open()
    await first.put_endpoint(endpoint("ep_a"))
    await first.put_monitor(monitor("mon_a"))
    event, match = transfer("mon_a", 1, 1)
    ids = await first.advance("ethereum", {"block": 100}, [event], [match], NOW)
    before = (await first.list_monitors(), await first.monitors_version(),
              await first.monitor_events("mon_a"))
    await first.close()

    second = store_factory()
    await second.open()
    try:
        after = (await second.list_monitors(), await second.monitors_version(),
                 await second.monitor_events("mon_a"))
        assert after == before and before[1] > 0
        assert await second.get_cursor("ethereum") == {"block": 100}
        assert await second.advance("ethereum", {"block": 100}, [event], [match], NOW) == [
            (ids[0].id, False)]
        assert len(await second.deliveries_of("ep_a")) == 1
    finally:
        await second.close()
