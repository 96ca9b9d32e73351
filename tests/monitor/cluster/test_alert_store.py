"""The cluster's alert store on a real redis-server: states with the stream cursor, the
outbox in order per receiver, the notification log, fenced writes refused once the lease
moved, and silences, acks and queued Alertmanager alerts merged from several instances."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from alerts import NotLeader
from alerts.state import AlertState
from alerts.store import Outgoing
from monitor.cluster import RedisAlertStore
from tests.support.redis_server import RedisKeyspace

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def store(space: RedisKeyspace, holder: str) -> RedisAlertStore:
    return RedisAlertStore(space.url, holder=holder, prefix=space.prefix)


def lead(space: RedisKeyspace, holder: str) -> None:
    with redis.Redis.from_url(space.url) as client:
        client.set(f"{space.prefix}:alerting:leader", holder)


def test_states_outbox_and_log_round_trip(redis_keyspace: RedisKeyspace) -> None:
    lead(redis_keyspace, "a")
    s = store(redis_keyspace, "a")
    firing = AlertState("firing", T0, T0, None, 3, 0, {"success": False})
    s.cursor = "1-0"
    s.save_states({("TargetDown", "eth"): firing, ("TargetDown", "btc"): AlertState()})
    s.enqueue([Outgoing("tg", "firing", "g1", [{"alertname": "TargetDown"}], "one"),
               Outgoing("tg", "firing", "g2", [], "two", (("Ack", "ack:x"),)),
               Outgoing("ops", "firing", "g1", [], "three")], T0, {"router": {"v": 1}})
    again = store(redis_keyspace, "b")  # any instance reads what the leader wrote
    assert again.load_states() == {("TargetDown", "eth"): firing}
    assert again.stored_cursor() == "1-0"
    assert again.get("router") == {"v": 1}
    head = again.next_pending("tg")
    assert head is not None and head[0].text == "one" and head[1] == T0
    s.mark_sent(head[0].id, "-100", 7, T0)
    second = again.next_pending("tg")
    assert second is not None and second[0].text == "two"
    assert second[0].buttons == (("Ack", "ack:x"),)
    s.mark_retry(second[0].id, "429", T0 + timedelta(seconds=7))
    assert again.next_pending("tg") == (
        second[0].__class__(second[0].id, "tg", "firing", "two", (("Ack", "ack:x"),), 1),
        T0 + timedelta(seconds=7))
    s.mark_failed(second[0].id, "bad request")
    assert again.next_pending("tg") is None
    assert [h["text"] for h in again.history()] == ["three", "two", "one"]
    assert [h["status"] for h in again.history()] == ["pending", "failed", "sent"]
    assert again.message_of("-100", 7) == {"id": head[0].id, "text": "one",
                                            "alerts": [{"alertname": "TargetDown"}]}
    s.save_states({("TargetDown", "eth"): AlertState()})
    assert again.load_states() == {}


def test_a_fenced_write_is_refused_after_the_lease_moved(
        redis_keyspace: RedisKeyspace) -> None:
    lead(redis_keyspace, "old")
    old = store(redis_keyspace, "old")
    old.save_states({("TargetDown", "eth"): AlertState("firing", T0, T0, None, 3, 0, {})})
    lead(redis_keyspace, "new")  # the old leader's lease ran out, another took it
    with pytest.raises(NotLeader):
        old.enqueue([Outgoing("tg", "resolved", "g", [], "resolved")], T0, {"router": {}})
    with pytest.raises(NotLeader):
        old.save_states({("TargetDown", "eth"): AlertState()})
    with pytest.raises(NotLeader):
        old.put("router", {"v": 2})
    new = store(redis_keyspace, "new")
    assert new.next_pending("tg") is None and new.get("router") is None
    assert ("TargetDown", "eth") in new.load_states()  # nothing of the refused writes
    new.put("router", {"v": 3})
    assert old.get("router") == {"v": 3}


def test_silences_acks_and_external_alerts_merge_from_every_instance(
        redis_keyspace: RedisKeyspace) -> None:
    lead(redis_keyspace, "a")
    a, b = store(redis_keyspace, "a"), store(redis_keyspace, "b")
    silence = {"id": "s1", "matchers": {"target": "eth"}, "starts_at": T0.isoformat(),
               "ends_at": (T0 + timedelta(hours=1)).isoformat(), "comment": "",
               "created_by": "api"}
    a.put_silence(silence)
    b.put_silence({**silence, "id": "s2"})  # neither overwrites the other
    assert [s["id"] for s in a.silences()] == ["s1", "s2"]
    b.ack("fp1", "@alice", T0)
    a.ack("fp2", "@bob", T0)
    assert a.acks() == {"fp1": {"by": "@alice", "at": T0.isoformat()},
                        "fp2": {"by": "@bob", "at": T0.isoformat()}}
    b.queue_external([{"labels": {"alertname": "X"}}])
    a.queue_external([{"labels": {"alertname": "Y"}}])
    assert [q["labels"]["alertname"] for q in a.queued_external()] == ["X", "Y"]
    b.queue_external([{"labels": {"alertname": "Z"}}])  # arrives while the leader works
    a.consume_external(2, [{"labels": {"alertname": "X"}}])
    assert [q["labels"]["alertname"] for q in a.queued_external()] == ["Z"]
    assert a.get("external") == [{"labels": {"alertname": "X"}}]
    b.put("telegram-offset:tg", 12)  # not a leader document: any instance writes it
    assert a.get("telegram-offset:tg") == 12


def test_the_log_keeps_the_newest_and_never_drops_a_pending_one(
        redis_keyspace: RedisKeyspace) -> None:
    lead(redis_keyspace, "a")
    s = store(redis_keyspace, "a")
    s.log_keep = 3
    s.enqueue([Outgoing("tg", "firing", "g0", [], "stuck")], T0)  # stays pending
    for i in range(1, 6):
        s.enqueue([Outgoing("ops", "firing", f"g{i}", [], f"n{i}")], T0)
        head = s.next_pending("ops")
        assert head is not None
        s.mark_sent(head[0].id, "-100", 100 + i, T0)
    s.enqueue([Outgoing("ops", "firing", "g6", [], "n6")], T0)  # the write that trims
    texts = [n["text"] for n in s.history(100)]
    assert texts == ["n6", "n5", "n4", "stuck"], texts
    assert s.message_of("-100", 101) is None  # the dropped one's message index went too
    assert s.message_of("-100", 105) is not None
    head = s.next_pending("tg")
    assert head is not None and head[0].text == "stuck"


def test_ended_silences_and_old_acks_are_forgotten_after_a_week(
        redis_keyspace: RedisKeyspace) -> None:
    s = store(redis_keyspace, "a")
    old = {"id": "old", "matchers": {"target": "a"}, "starts_at": T0.isoformat(),
           "ends_at": (T0 + timedelta(hours=1)).isoformat(), "comment": "", "created_by": "x"}
    new = {**old, "id": "new", "ends_at": (T0 + timedelta(days=9)).isoformat()}
    s.put_silence(old)
    s.put_silence(new)
    s.ack("fp-old", "alice", T0)
    s.ack("fp-new", "bob", T0 + timedelta(days=8))
    assert [x["id"] for x in s.silences()] == ["new", "old"]  # no time given: all
    later = T0 + timedelta(days=8, hours=2)
    assert [x["id"] for x in s.silences(later)] == ["new"]
    assert set(s.acks(later)) == {"fp-new"}
    assert [x["id"] for x in s.silences()] == ["new"]  # dropped from Redis, not only hidden
    assert set(s.acks()) == {"fp-new"}


def test_a_resolved_notification_replies_to_its_groups_last_firing(
        redis_keyspace: RedisKeyspace) -> None:
    lead(redis_keyspace, "a")
    s = store(redis_keyspace, "a")
    s.enqueue([Outgoing("tg", "firing", "g1", [], "down")], T0)
    head = s.next_pending("tg")
    assert head is not None and head[0].reply_to is None
    s.mark_sent(head[0].id, "-100", 41, T0)
    s.enqueue([Outgoing("tg", "resolved", "g1", [], "up again"),
               Outgoing("tg", "resolved", "g2", [], "other group")], T0)
    first = s.next_pending("tg")
    assert first is not None and first[0].reply_to == ("-100", 41)
    s.mark_sent(first[0].id, "-100", 42, T0)
    second = s.next_pending("tg")
    assert second is not None and second[0].reply_to is None  # g2 never fired here
