"""Alert states, documents and the outbox survive a reopen; the outbox keeps order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerts.state import AlertState
from alerts.store import AlertStore, Outgoing

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
