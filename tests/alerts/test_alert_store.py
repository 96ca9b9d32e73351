"""Alert states, documents and the outbox survive a reopen; the outbox keeps order."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.state import AlertState
from alerts.store import SCHEMA, VERSION, AlertStore, Outgoing
from core.formats import FormatError

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def outgoing(text: str, receiver: str = "oncall") -> Outgoing:
    return Outgoing(receiver, "firing", "g1", [{"alertname": "TargetDown", "target": "a"}],
                    text, [("Silence 1h", "s1h:abc")])


def test_states_documents_and_outbox_survive_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    store = AlertStore(path)
    firing = AlertState("firing", T0, T0, None, 3, 0, {"success": False})
    store.save_states({("TargetDown", "a"): firing, ("TargetDown", "b"): AlertState()})
    store.enqueue([outgoing("one"), outgoing("two")], T0, {"router": {"groups": {"g1": 1}}})
    store.close()

    again = AlertStore(path)
    assert again.load_states() == {("TargetDown", "a"): firing}
    assert again.get("router") == {"groups": {"g1": 1}} and again.get("nothing") is None
    head = again.next_pending("oncall")
    assert head is not None
    queued, due = head
    assert (queued.text, queued.buttons, due) == ("one", (("Silence 1h", "s1h:abc"),), T0)
    assert again.next_pending("managers") is None


def test_outbox_marks_keep_order_and_history(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.db")
    store.enqueue([outgoing("one"), outgoing("two"), outgoing("three")], T0)
    first = store.next_pending("oncall")
    assert first is not None
    store.mark_retry(first[0].id, "429: retry after 3 s", T0 + timedelta(seconds=3))
    retried = store.next_pending("oncall")
    assert retried is not None and retried[0].id == first[0].id  # order is kept
    assert retried[1] == T0 + timedelta(seconds=3) and retried[0].attempts == 1
    store.mark_sent(first[0].id, "-100", 42, T0 + timedelta(seconds=4))
    second = store.next_pending("oncall")
    assert second is not None and second[0].text == "two"
    store.mark_failed(second[0].id, "400: can't parse entities")
    third = store.next_pending("oncall")
    assert third is not None and third[0].text == "three"
    history = store.history()
    assert [(h["text"], h["status"]) for h in history] == [
        ("three", "pending"), ("two", "failed"), ("one", "sent")]
    assert history[2]["attempts"] == 2 and history[2]["message_id"] == 42
    assert history[2]["alerts"] == [{"alertname": "TargetDown", "target": "a"}]
    assert store.message_of("-100", 42) is not None and store.message_of("-100", 7) is None


def test_a_file_from_before_the_schema_version_is_read_as_it_is(tmp_path: Path) -> None:
    """Files written before the schema carried a version have user_version 0 and the same
    tables: their rows are read, and the file is stamped with the current version."""
    path = tmp_path / "alerts.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA.replace(f"PRAGMA user_version = {VERSION};", ""))
    conn.execute("INSERT INTO documents VALUES ('router', '{\"groups\": {}}')")
    conn.commit()
    assert conn.execute("PRAGMA user_version").fetchone() == (0,)
    conn.close()
    store = AlertStore(path)
    assert store.get("router") == {"groups": {}}
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (VERSION,)
    conn.close()


def test_a_file_of_an_unknown_schema_version_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(FormatError) as caught:
        AlertStore(path)
    assert str(caught.value) == (
        f"the alert store {path} has schema version 999; this build knows versions 0, 1"
        " (written by a newer build? run that one, or move the data away to start afresh)")
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (999,)
    conn.close()


def test_sqlite_forgets_ended_silences_and_old_acks_after_a_week(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "a.db")
    t0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    old = {"id": "old", "matchers": {"target": "a"}, "starts_at": t0.isoformat(),
           "ends_at": (t0 + timedelta(hours=1)).isoformat(), "comment": "", "created_by": "x"}
    store.put_silence(old)
    store.ack("fp-old", "alice", t0)
    later = t0 + timedelta(days=8, hours=2)
    assert [s["id"] for s in store.silences()] == ["old"]
    assert store.silences(later) == [] and store.acks(later) == {}
    store.put_silence({**old, "id": "new", "starts_at": later.isoformat(),
                       "ends_at": (later + timedelta(hours=1)).isoformat()})
    store.ack("fp-new", "bob", later)
    assert [s["id"] for s in store.silences()] == ["new"]  # dropped, not only hidden
    assert set(store.acks()) == {"fp-new"}
    store.close()
