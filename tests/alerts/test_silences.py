"""Silences: duration parsing, matching, expiry, persistence, and the bot's `/silence` helper."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts import AlertError
from alerts.silences import Silence, SilenceError, Silences, parse_duration, silence_for

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
LABELS = {"alertname": "NodeLagging", "target": "eth-main", "severity": "warning"}


def silence(sid: str = "s1", start: float = 0, end: float = 3600, **matchers: str) -> Silence:
    return Silence(id=sid, matchers=matchers or {"target": "eth-main"},
                   starts_at=T0 + timedelta(seconds=start), ends_at=T0 + timedelta(seconds=end),
                   comment="upgrade", created_by="alice")


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("30m", 1800), ("1h", 3600), ("2d", 172800), ("1w", 604800),
    ("1h30m", 5400), (" 2H ", 7200),
])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1", "h", "1.5h", "-1h", "1y", "0m", "1h 30m",
                                  # past datetime's range, or int() of 5,000 digits
                                  "36501d", "99999999999999d", "1" * 5000 + "s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(SilenceError) as info:
        parse_duration(text)
    assert isinstance(info.value, AlertError)
    assert isinstance(info.value, ValueError)


def test_silence_validates() -> None:
    with pytest.raises(SilenceError, match="matcher"):
        Silence(id="x", matchers={}, starts_at=T0, ends_at=T0 + timedelta(hours=1))
    with pytest.raises(SilenceError, match="end before"):
        Silence(id="x", matchers={"a": "b"}, starts_at=T0, ends_at=T0 - timedelta(seconds=1))
    with pytest.raises(SilenceError, match="aware"):
        Silence(id="x", matchers={"a": "b"}, starts_at=T0.replace(tzinfo=None),
                ends_at=T0.replace(tzinfo=None))


def test_silence_matches_every_matcher_and_only_while_active() -> None:
    s = silence(target="eth-main", alertname="NodeLagging")
    assert s.matches(LABELS)
    assert not s.matches({**LABELS, "alertname": "TargetDown"})
    assert not s.matches({"alertname": "NodeLagging"})  # a missing label never equals
    assert not s.is_active(T0 - timedelta(seconds=1))
    assert s.is_active(T0)
    assert not s.is_active(T0 + timedelta(hours=1))  # the end is exclusive


def test_match_prefers_the_longest_and_ignores_inactive() -> None:
    silences = Silences([silence("short", end=600), silence("long", end=7200),
                         silence("future", start=60, end=99999),
                         silence("other", alertname="TargetDown")])
    assert [s.id for s in silences.active(T0)] == ["short", "other", "long"]
    found = silences.match(LABELS, T0)
    assert found is not None and found.id == "long"
    assert silences.match({"target": "eth-other"}, T0) is None
    later = silences.match(LABELS, T0 + timedelta(hours=3))
    assert later is not None and later.id == "future"


def test_expire_ends_now_and_a_future_one_never_starts() -> None:
    silences = Silences([silence("now"), silence("future", start=600, end=1200)])
    expired = silences.expire("now", T0 + timedelta(minutes=5))
    assert expired is not None and expired.ends_at == T0 + timedelta(minutes=5)
    assert silences.match(LABELS, T0 + timedelta(minutes=5)) is None
    future = silences.expire("future", T0)
    assert future is not None and future.ends_at == future.starts_at
    assert silences.active(T0 + timedelta(minutes=15)) == []
    assert silences.expire("nope", T0) is None


def test_expire_keeps_an_already_ended_silence() -> None:
    silences = Silences([silence("old", end=60)])
    again = silences.expire("old", T0 + timedelta(hours=1))
    assert again is not None and again.ends_at == T0 + timedelta(seconds=60)


def test_add_replaces_the_same_id_and_prune_forgets_ended() -> None:
    silences = Silences([silence("a", end=60)])
    silences.add(silence("a", end=120))
    silences.add(silence("b", end=7200))
    assert len(silences) == 2
    got = silences.get("a")
    assert got is not None and got.ends_at == T0 + timedelta(seconds=120)
    silences.prune(T0 + timedelta(seconds=120))
    assert silences.get("a") is None and silences.get("b") is not None


def test_json_round_trip() -> None:
    silences = Silences([silence("a"), silence("b", alertname="TargetDown", target="x")])
    back = Silences.from_json(silences.to_json())
    assert back.get("a") == silences.get("a")
    assert back.get("b") == silences.get("b")
    assert back.to_json() == silences.to_json()


@pytest.mark.parametrize("text", ["nope", "{}", '[{"id": "a"}]', '[{"id": "a", "matchers": {},'
                                  ' "starts_at": "2026-01-01T00:00:00+00:00",'
                                  ' "ends_at": "2026-01-01T01:00:00+00:00"}]'])
def test_from_json_rejects_garbage(text: str) -> None:
    with pytest.raises(SilenceError):
        Silences.from_json(text)


def test_silence_for_a_target() -> None:
    s = silence_for("eth-main", ["eth-main", "btc"], ["NodeLagging"], "2h", "upgrade", "alice",
                    T0)
    assert s.matchers == {"target": "eth-main"}
    assert (s.starts_at, s.ends_at) == (T0, T0 + timedelta(hours=2))
    assert (s.comment, s.created_by) == ("upgrade", "alice")
    assert len(s.id) == 8
    # the same command at the same moment gives the same id (a retry replaces, not doubles)
    again = silence_for("eth-main", ["eth-main"], [], "2h", "upgrade", "alice", T0)
    assert again.id == s.id
    other = silence_for("eth-main", ["eth-main"], [], "2h", "upgrade", "bob", T0)
    assert other.id != s.id


def test_silence_for_an_alertname_and_target_wins() -> None:
    s = silence_for("NodeLagging", ["eth-main"], ["NodeLagging"], timedelta(minutes=30), "",
                    "bob", T0)
    assert s.matchers == {"alertname": "NodeLagging"}
    assert s.ends_at == T0 + timedelta(minutes=30)
    both = silence_for("x", ["x"], ["x"], "1m", "", "bob", T0)
    assert both.matchers == {"target": "x"}


def test_silence_for_refuses_a_duration_past_the_limit() -> None:
    with pytest.raises(SilenceError, match="at most"):
        silence_for("eth-main", ["eth-main"], [], timedelta(days=10**6), "", "alice", T0)


def test_silence_for_rejects_unknown_names_and_bad_durations() -> None:
    with pytest.raises(SilenceError, match="no target or alert"):
        silence_for("eth-mian", ["eth-main"], ["NodeLagging"], "1h", "", "bob", T0)
    with pytest.raises(SilenceError, match="duration"):
        silence_for("eth-main", ["eth-main"], [], "soon", "", "bob", T0)
    with pytest.raises(SilenceError, match="more than 0s"):
        silence_for("eth-main", ["eth-main"], [], timedelta(0), "", "bob", T0)
