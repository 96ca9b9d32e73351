"""Uptime history survives a restart and answers per window."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.runtime import UptimeHistory

NOW = 1_800_000_000.0


async def test_uptime_ratios_persist_across_restart(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    history = UptimeHistory(path, clock=lambda: NOW)
    for i in range(10):
        history.record("a", i < 9, NOW - 60)  # 9 of 10 in the last hour
    history.record("a", False, NOW - 3 * 86400)  # only inside 7 d and 30 d
    history.record("b", True, NOW - 40 * 86400)  # beyond retention: dropped
    await history.flush()
    history.close()

    reopened = UptimeHistory(path, clock=lambda: NOW)
    reopened.record("a", True, NOW)  # not flushed yet: still counted
    ratios = await reopened.ratios(["a", "b", "c"])
    reopened.close()
    assert ratios["a"]["24h"] == pytest.approx(10 / 11, abs=1e-6)
    assert ratios["a"]["7d"] == pytest.approx(10 / 12, abs=1e-6)
    assert ratios["a"]["30d"] == pytest.approx(10 / 12, abs=1e-6)
    assert ratios["b"] == {"24h": None, "7d": None, "30d": None}
    assert ratios["c"]["24h"] is None


async def test_flush_merges_counts_of_the_same_hour(tmp_path: Path) -> None:
    history = UptimeHistory(tmp_path / "h.sqlite3", clock=lambda: NOW)
    history.record("a", True, NOW)
    await history.flush()
    history.record("a", False, NOW)
    await history.flush()
    ratios = await history.ratios(["a"])
    history.close()
    assert ratios["a"]["24h"] == 0.5
