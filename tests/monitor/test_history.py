"""Uptime history survives a restart and answers per window."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.formats import FormatError
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


async def test_a_file_from_before_the_schema_version_is_read_as_it_is(tmp_path: Path) -> None:
    """The table as builds before the version wrote it (user_version 0): read, then stamped."""
    path = tmp_path / "history.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE uptime (target TEXT NOT NULL, hour INTEGER NOT NULL,"
                 " ok INTEGER NOT NULL, total INTEGER NOT NULL, PRIMARY KEY (target, hour))"
                 " WITHOUT ROWID")
    conn.execute("INSERT INTO uptime VALUES ('a', ?, 3, 4)", (int(NOW // 3600),))
    conn.commit()
    conn.close()
    history = UptimeHistory(path, clock=lambda: NOW)
    ratios = await history.ratios(["a"])
    history.close()
    assert ratios["a"]["24h"] == pytest.approx(0.75)
    conn = sqlite3.connect(path)
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    conn.close()
    assert version > 0


def test_a_file_of_an_unknown_schema_version_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(FormatError) as caught:
        UptimeHistory(path)
    assert str(caught.value) == (
        f"the uptime history {path} has schema version 999; this build knows versions 0, 1, 2"
        " (written by a newer build? run that one, or move the data away to start afresh)")
