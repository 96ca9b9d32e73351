"""Files that hold secrets at rest (API keys, webhook signing secrets in SQLite): the data
directory is made 0700 and every file in it 0600, whatever the umask. SQLite gives a
database's -wal, -shm and -journal files the database file's own mode, so creating the
database file first is enough for them.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("crypitor")

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """`path` as a directory: created 0700 (parents as the umask says); one that exists
    open to others is left as it is (it may be shared on purpose) with a warning."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.chmod(path, DIR_MODE)  # mkdir's mode passes through the umask
        return path
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("data directory %s is open to other users (mode %o); the files in it "
                    "are 0600, but 0700 is safer", path, mode)
    return path


def private_file(path: Path) -> Path:
    """`path` as a file of ours readable only by us: created empty 0600 when absent, an
    existing one of ours tightened to 0600 (files made before this rule)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        info = os.fstat(fd)
        if stat.S_IMODE(info.st_mode) != FILE_MODE and info.st_uid == os.geteuid():
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return path


def private_database(path: Path) -> Path:
    """A SQLite database file prepared before sqlite opens it: the directory 0700 (see
    `private_dir`), the file 0600, and any -wal/-shm/-journal left by an older version
    tightened too (SQLite copies the database's mode only to the ones it creates)."""
    private_dir(path.parent)
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            private_file(side)
    return path
