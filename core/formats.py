"""Format versions of what we store. During a rolling upgrade old and new processes share one
SQLite file or one Redis, so every stored schema says its version: a process reads the
versions it knows (its own and the previous one) and refuses any other with `FormatError`,
rather than misreading data a newer build wrote.

Errors: `FormatError` (also a ValueError), naming the place, the version found and the
versions this build knows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection


class FormatError(ValueError):
    """Stored data of a format version this build does not know."""

    def __init__(self, where: str, found: object, known: Collection[int],
                 kind: str = "format") -> None:
        versions = ", ".join(str(v) for v in sorted(known))
        super().__init__(f"{where} has {kind} version {found}; this build knows versions "
                         f"{versions} (written by a newer build? run that one, or move the "
                         "data away to start afresh)")
        self.where, self.found, self.known = where, found, tuple(sorted(known))


def sqlite_version(conn: sqlite3.Connection, where: str, known: Collection[int]) -> int:
    """The schema version (`PRAGMA user_version`) of the file open on `conn`; `FormatError`
    when it is not one of `known`. A new file, and a file of before versions, read 0."""
    (found,) = conn.execute("PRAGMA user_version").fetchone()
    if found not in known:
        raise FormatError(where, found, known, "schema")
    return int(found)
