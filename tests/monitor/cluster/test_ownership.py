"""The pure parts of cluster probing: rendezvous ownership, `locations`, the wall-clock grid,
results read back from JSON, the User-Agent naming the location, and the `location` label."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest

from monitor.cluster import Member, Ownership, owner, probed_from, recently_probed
from monitor.config import TargetConfig
from monitor.exporters import new_registry
from monitor.runtime import TargetState, grid_offset, grid_slot, grid_start
from probes.base import ProbeResult, Reason
from probes.httpmessage import Request, Url, user_agent

NAMES = [f"target-{i}" for i in range(3000)]
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def target(name: str, locations: tuple[str, ...] = ()) -> TargetConfig:
    return TargetConfig(name, "http", "http://127.0.0.1:1/", 30.0, 5.0, locations=locations)


def members(*pairs: tuple[str, str]) -> list[Member]:
    return [Member(i, loc, T0) for i, loc in pairs]


def test_owner_is_one_of_the_instances_and_spreads_evenly() -> None:
    instances = ["a", "b", "c"]
    counts = Counter(owner(n, instances) for n in NAMES)
    assert set(counts) == set(instances)
    assert all(800 < c < 1200 for c in counts.values())
    assert owner("x", []) is None
    assert owner("x", ["b", "a"]) == owner("x", ["a", "b"])  # order does not matter


def test_a_joining_instance_takes_only_its_share_and_a_leaving_one_gives_only_its_own() -> None:
    before = {n: owner(n, ["a", "b", "c"]) for n in NAMES}
    after = {n: owner(n, ["a", "b", "c", "d"]) for n in NAMES}
    moved = [n for n in NAMES if before[n] != after[n]]
    assert all(after[n] == "d" for n in moved)  # nothing moves between the old members
    gone = {n: owner(n, ["a", "c"]) for n in NAMES}
    assert all(gone[n] == before[n] for n in NAMES if before[n] != "b")


def test_locations_restrict_where_a_target_is_probed() -> None:
    assert probed_from(target("t"), "eu")
    assert probed_from(target("t", ("eu", "us")), "us")
    assert not probed_from(target("t", ("eu",)), "us")


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


def test_ownership_follows_the_members_of_its_own_location() -> None:
    states = [TargetState(target(n)) for n in NAMES[:300]]
    states.append(TargetState(target("eu-only", ("eu",))))
    registry = CollectorRegistry()
    clock = Clock()
    mine = Ownership("us-1", "us", states, registry, lease=10.0, clock=clock)
    assert not mine.peers and mine.count() == 0  # before any read: it may have peers
    clock.now += 10.0
    assert set(mine.peers) == {"us-1"}  # Redis silent for a lease: alone, probes everything
    assert mine.count() == 300  # but never a target of another location
    mine.update(members(("eu-1", "eu"), ("us-2", "us"), ("us-1", "us")))
    assert mine.peers == ("us-1", "us-2")
    owned = {s.name for s in states if mine.owns(s.config)}
    assert owned == {n for n in NAMES[:300] if owner(n, ["us-1", "us-2"]) == "us-1"}
    assert registry.get_sample_value("crypitor_cluster_owned_targets") == len(owned)
    mine.update(members(("us-2", "us")))  # a Redis that lost our beat: we still count
    assert mine.peers == ("us-1", "us-2")


def test_a_newcomer_takes_its_share_at_the_same_slot_on_every_instance() -> None:
    """The old owner probes until the newcomer settled (SETTLE after it joined, by Redis's
    clock), the newcomer from then on: both decide from the same data, no Redis call."""
    states = [TargetState(target(n)) for n in NAMES[:200]]
    clock = Clock()
    old = Ownership("a", "eu", states, CollectorRegistry(), clock=clock)
    new = Ownership("b", "eu", states, CollectorRegistry(), clock=clock)
    joined = datetime.fromtimestamp(clock.now, UTC)
    both = [Member("a", "eu", T0, T0 - timedelta(hours=1)), Member("b", "eu", T0, joined)]
    old.update(both)
    new.update(both)
    moving = [s.config for s in states if owner(s.name, ["a", "b"]) == "b"]
    assert moving
    settled = clock.now + old.settle
    for config in moving:
        for at in (clock.now, settled - 0.001):
            assert old.owns(config, at) and not new.owns(config, at)
        assert new.owns(config, settled) and not old.owns(config, settled)
        assert new.soon(config) and old.soon(config)  # both fire it across the hand-over
    clock.now = settled + 1
    assert all(not old.soon(c) for c in moving)
    assert sum(old.owns(s.config) + new.owns(s.config) for s in states) == len(states)


def test_recently_probed_is_owned_or_a_result_younger_than_two_intervals() -> None:
    state = TargetState(target("t"))
    assert recently_probed(state, lambda _c: True, T0)
    assert not recently_probed(state, lambda _c: False, T0)
    state.record(ProbeResult(True, 0.1, T0))
    assert recently_probed(state, lambda _c: False, T0 + timedelta(seconds=59))
    assert not recently_probed(state, lambda _c: False, T0 + timedelta(seconds=60))


def test_the_grid_gives_every_instance_the_same_slots() -> None:
    offset = grid_offset("t", 30.0)
    assert offset == grid_offset("t", 30.0) and 0 <= offset < 30
    start = grid_start(1_000_000.0, offset, 30.0)
    assert 1_000_000.0 <= start < 1_000_030.0
    assert (start - offset) % 30.0 == 0.0
    k = grid_slot(start, offset, 30.0)
    assert grid_slot(start + 30.0, offset, 30.0) == k + 1
    assert grid_slot(start + 0.004, offset, 30.0) == k  # a late fire is still its slot
    assert grid_start(start, offset, 30.0) == start  # on a grid point: that point


def test_a_result_reads_back_from_its_json() -> None:
    result = ProbeResult(False, 0.25, T0, {"status_code": 503, "syncing": True, "x": "y"},
                         Reason.STATUS, "503", {"connect": 0.01}, ("w",))
    assert ProbeResult.from_json(result.as_json()) == result
    ok = ProbeResult(True, 0.5, T0)
    assert ProbeResult.from_json(ok.as_json()) == ok


def test_the_user_agent_names_the_location_also_after_a_redirect() -> None:
    assert user_agent("") == "crypitor-monitor/0.1.0"
    agent = user_agent("eu")
    assert agent == "crypitor-monitor/0.1.0 (location=eu)"
    request = Request(Url("http://127.0.0.1:1/a"), user_agent=agent)
    assert b"User-Agent: crypitor-monitor/0.1.0 (location=eu)\r\n" in request.wire
    moved = request.redirect("http://127.0.0.2:2/b", 302)
    assert b"User-Agent: crypitor-monitor/0.1.0 (location=eu)\r\n" in moved.wire
    assert b"(location" not in Request(Url("http://127.0.0.1:1/a")).wire


def test_per_target_series_carry_location_and_only_the_shown_targets_gauges() -> None:
    mine = TargetState(TargetConfig("mine", "http", "http://x/", 30.0, 5.0,
                                    labels={"location": "rack-1", "team": "a"}))
    moved = TargetState(target("moved"))
    never = TargetState(target("never"))
    for s in (mine, moved):
        s.record(ProbeResult(True, 0.1, T0))
    registry, _ = new_registry([mine, moved, never], "eu", lambda s: s is mine)
    text = generate_latest(registry).decode()
    # the cluster's location wins over a target's own `location` label
    assert 'probe_success{location="eu",target="mine",team="a",type="http"} 1.0' in text
    assert 'probe_success{location="eu",target="moved"' not in text  # not shown: no gauge
    assert 'crypitor_probes_total{location="eu",result="success",target="moved",team="",' \
           'type="http"} 1.0' in text  # its counters stay
    assert 'target="never"' not in text
    single, _ = new_registry([mine])
    assert 'probe_success{location="rack-1",target="mine",team="a",type="http"} 1.0' in \
        generate_latest(single).decode()
