"""Maintenance windows: recurring and one-off, across midnight and DST, and label matching."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerts.maintenance import in_window, window_span
from monitor.config import MaintenanceConfig

ETH = {"alertname": "NodeLagging", "target": "eth-main", "type": "ethereum"}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
        second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_daily_window_in_utc() -> None:
    w = MaintenanceConfig(name="nightly", start="02:00", duration=3600)
    assert not in_window(w, ETH, utc(2026, 1, 6, 1, 59, 59))
    assert in_window(w, ETH, utc(2026, 1, 6, 2, 0))
    assert in_window(w, ETH, utc(2026, 1, 6, 2, 59, 59))
    assert not in_window(w, ETH, utc(2026, 1, 6, 3, 0))  # the end is exclusive
    assert window_span(w, utc(2026, 1, 6, 2, 30)) == (utc(2026, 1, 6, 2), utc(2026, 1, 6, 3))


def test_weekly_window_crossing_midnight() -> None:
    # 2026-01-04 is a Sunday: 23:30 + 1h covers Monday 00:15
    w = MaintenanceConfig(name="sunday-night", start="23:30", duration=3600, every=("sunday",))
    assert in_window(w, ETH, utc(2026, 1, 4, 23, 45))
    assert in_window(w, ETH, utc(2026, 1, 5, 0, 15))
    assert not in_window(w, ETH, utc(2026, 1, 5, 0, 30))
    assert not in_window(w, ETH, utc(2026, 1, 3, 23, 45))  # Saturday night is not Sunday
    assert not in_window(w, ETH, utc(2026, 1, 6, 0, 15))  # Tuesday 00:15: Monday has none


def test_multi_day_window() -> None:
    w = MaintenanceConfig(name="migration", start="22:00", duration=3 * 86400, every=("friday",))
    # Friday 2026-01-09 22:00 until Monday 2026-01-12 22:00
    assert in_window(w, ETH, utc(2026, 1, 11, 12))
    assert in_window(w, ETH, utc(2026, 1, 12, 21, 59))
    assert not in_window(w, ETH, utc(2026, 1, 12, 22))
    assert not in_window(w, ETH, utc(2026, 1, 9, 21, 59))


def test_local_time_follows_dst_in_berlin() -> None:
    w = MaintenanceConfig(name="morning", start="09:00", duration=1800, timezone="Europe/Berlin")
    assert in_window(w, ETH, utc(2026, 1, 15, 8, 10))  # CET: 09:00 local is 08:00 UTC
    assert not in_window(w, ETH, utc(2026, 1, 15, 7, 10))
    assert in_window(w, ETH, utc(2026, 7, 15, 7, 10))  # CEST: 09:00 local is 07:00 UTC
    assert not in_window(w, ETH, utc(2026, 7, 15, 8, 10))


def test_spring_forward_start_in_the_gap() -> None:
    # last Sunday of March 2026: Berlin jumps from 02:00 CET to 03:00 CEST (01:00 UTC)
    w = MaintenanceConfig(name="eth-upgrade", start="02:00", duration=3600, every=("sunday",),
                          timezone="Europe/Berlin")
    # 02:00 does not exist: the window keeps the winter offset, i.e. 03:00-04:00 CEST
    assert window_span(w, utc(2026, 3, 29, 1, 30)) == (utc(2026, 3, 29, 1), utc(2026, 3, 29, 2))
    assert not in_window(w, ETH, utc(2026, 3, 29, 0, 59))
    assert not in_window(w, ETH, utc(2026, 3, 29, 2, 0))
    # the Sunday after, 02:00 CEST is 00:00 UTC
    assert window_span(w, utc(2026, 4, 5, 0, 30)) == (utc(2026, 4, 5, 0), utc(2026, 4, 5, 1))


def test_window_spanning_spring_forward_lasts_real_time() -> None:
    # 01:30 CET (00:30 UTC) plus one real hour ends 03:30 CEST (01:30 UTC)
    w = MaintenanceConfig(name="w", start="01:30", duration=3600, timezone="Europe/Berlin")
    assert window_span(w, utc(2026, 3, 29, 1)) == (utc(2026, 3, 29, 0, 30),
                                                  utc(2026, 3, 29, 1, 30))
    assert not in_window(w, ETH, utc(2026, 3, 29, 1, 30))


def test_fall_back_ambiguous_start_takes_the_first() -> None:
    # last Sunday of October 2026: 03:00 CEST goes back to 02:00 CET (01:00 UTC);
    # 02:30 happens twice, the window starts at the first (00:30 UTC)
    w = MaintenanceConfig(name="w", start="02:30", duration=3600, every=("sunday",),
                          timezone="Europe/Berlin")
    assert window_span(w, utc(2026, 10, 25, 1)) == (utc(2026, 10, 25, 0, 30),
                                                   utc(2026, 10, 25, 1, 30))
    assert not in_window(w, ETH, utc(2026, 10, 25, 1, 45))  # the second 02:30 is not a start


def test_midnight_crossing_across_dst() -> None:
    # Saturday 23:00 CET for 4 real hours: 22:00 UTC to 02:00 UTC, i.e. 04:00 CEST Sunday
    w = MaintenanceConfig(name="w", start="23:00", duration=4 * 3600, every=("saturday",),
                          timezone="Europe/Berlin")
    assert in_window(w, ETH, utc(2026, 3, 29, 1, 59))
    assert not in_window(w, ETH, utc(2026, 3, 29, 2, 0))


def test_one_off_window_in_its_timezone() -> None:
    w = MaintenanceConfig(name="once", start="2026-12-01T02:00", duration=7200,
                          timezone="Europe/Berlin")
    assert window_span(w, utc(2026, 12, 1, 1)) == (utc(2026, 12, 1, 1), utc(2026, 12, 1, 3))
    assert not in_window(w, ETH, utc(2026, 12, 1, 0, 59))
    assert not in_window(w, ETH, utc(2026, 12, 2, 1, 30))  # it does not recur
    with_offset = MaintenanceConfig(name="once", start="2026-12-01T02:00+00:00", duration=60,
                                    timezone="Europe/Berlin")
    assert in_window(with_offset, ETH, utc(2026, 12, 1, 2, 0, 30))


def test_match_selects_alerts_and_the_time_selects_windows() -> None:
    eth = MaintenanceConfig(name="eth", start="02:00", match={"type": "ethereum"})
    btc = MaintenanceConfig(name="btc", start="02:00", match={"type": "bitcoin"})
    later = MaintenanceConfig(name="later", start="05:00")
    now = utc(2026, 1, 6, 2, 30)
    assert in_window(eth, ETH, now)
    assert not in_window(btc, ETH, now)
    assert not in_window(later, ETH, now)
    assert [w.name for w in (eth, btc, later) if window_span(w, now)] == ["eth", "btc"]
    assert not any(in_window(w, ETH, now + timedelta(hours=1)) for w in (eth, btc, later))
