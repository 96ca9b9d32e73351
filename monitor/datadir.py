"""One process per data directory: `crypitor run` and `crypitor service` take an exclusive
lock on `data_dir/.lock` before they open anything in it, so a second instance started on
the same directory stops with one line naming it and the holder's pid instead of opening the
SQLite files the first one is writing.

`flock` locks belong to the open file: the kernel drops them when the holder exits, however
it exits, so a crash never leaves a stale lock behind (the pid written in the file is only
there to be named).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from core.files import FILE_MODE, private_dir

LOCK_NAME = ".lock"


class DataDirBusy(Exception):
    """Another process holds the data directory's lock."""

    def __init__(self, data_dir: Path, pid: str) -> None:
        self.data_dir, self.pid = data_dir, pid
        holder = f"pid {pid}" if pid else "another process"
        super().__init__(f"data_dir {data_dir} is in use by another crypitor ({holder}); "
                         "stop that one or give this one its own data_dir")


class DataDirLock:
    """The held lock of one data directory; `release()` (or leaving the `with`) frees it."""

    def __init__(self, data_dir: Path) -> None:
        """Takes the lock, creating the directory (0700) and the lock file (0600) when
        absent. Raises DataDirBusy when another process holds it, OSError when the
        directory cannot be made or written."""
        self.path = private_dir(data_dir) / LOCK_NAME
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise DataDirBusy(data_dir, holder if holder.isdecimal() else "") from None
        except BaseException:
            os.close(fd)
            raise
        # never unlinked on release: a process waiting on the old inode would then hold a
        # lock nobody else sees
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing the only descriptor drops the flock

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


async def run_locked(data_dir: Path, body: Callable[[], Awaitable[int]], log: logging.Logger,
                     refused: str) -> int:
    """`body()`'s exit code, run holding `data_dir`'s lock (taken before anything in it is
    opened); when the lock cannot be taken, `refused: <why>` logged to `log` and exit code 1."""
    try:
        lock = DataDirLock(data_dir)
    except (DataDirBusy, OSError) as exc:
        log.error("%s: %s", refused, exc)
        return 1
    with lock:
        return await body()
