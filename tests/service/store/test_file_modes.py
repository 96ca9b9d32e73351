"""Issue 12, item 7: the SQLite files that hold webhook signing secrets, and the files SQLite
makes beside them (-wal, -shm), are 0600 in a 0700 directory whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.files import private_database
from service.store.sqlite import SqliteStore
from tests.support.stores import endpoint

pytestmark = pytest.mark.timeout(60)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: whatever is private below is so by our own doing."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


async def test_store_files_and_wal_are_0600_in_a_0700_dir(tmp_path: Path,
                                                          open_umask: None) -> None:
    data = tmp_path / "data"
    store = SqliteStore(data / "service.sqlite3")
    await store.open()
    try:
        await store.put_endpoint(endpoint("ep_1"))  # a write: the WAL and SHM exist now
        names = sorted(p.name for p in data.iterdir())
        assert {"service.sqlite3", "service.sqlite3-wal", "service.sqlite3-shm"} <= set(names)
        assert {p.name: oct(mode(p)) for p in data.iterdir()} == \
            dict.fromkeys(names, oct(0o600))
        assert mode(data) == 0o700
    finally:
        await store.close()


def test_files_left_open_by_an_older_version_are_tightened(tmp_path: Path) -> None:
    db = tmp_path / "alerts.sqlite3"
    for p in (db, tmp_path / "alerts.sqlite3-wal", tmp_path / "alerts.sqlite3-shm"):
        p.write_bytes(b"")
        p.chmod(0o644)
    private_database(db)
    assert {p.name: mode(p) for p in tmp_path.iterdir()} == {
        "alerts.sqlite3": 0o600, "alerts.sqlite3-wal": 0o600, "alerts.sqlite3-shm": 0o600}
