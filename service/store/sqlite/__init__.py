"""The SQLite backend of `service.store.Store`: the embedded default, one process.

`store` composes it from the file (`file`: lock, threads, batching writer), the schema and row
helpers (`schema`), event acceptance and fan-out (`events`), endpoints and the queue (`queue`)
and monitors with follower cursors (`monitors`).
"""

from service.store.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
