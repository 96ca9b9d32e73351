"""The service's store and queue: the `Store` interface (`base`) and its two backends,
`sqlite` (embedded, one process) and `redis` (several processes share one queue), which keep
times alike (`times`: integer microseconds since the epoch); `sentinel` parses the
redis+sentinel:// addresses of the Redis backend (without loading the Redis client).

`open_store(queue, data_dir)` picks the backend a `[service].queue` value names; the backends
are imported only when chosen, so a SQLite deployment never loads the Redis client.
"""

from __future__ import annotations

from pathlib import Path

from service.store.base import IDEMPOTENCY_WINDOW, Settled, Store
from service.store.sentinel import SentinelAddress, is_sentinel_url, parse_sentinel_url, redacted

__all__ = ["IDEMPOTENCY_WINDOW", "SentinelAddress", "Settled", "Store", "is_sentinel_url",
           "open_store", "parse_sentinel_url", "redacted"]


def open_store(queue: str, data_dir: Path) -> Store:
    """The store `queue` names: a redis:// or redis+sentinel:// URL, or "sqlite" (a file in
    `data_dir`)."""
    if queue.startswith(("redis://", "rediss://", "redis+sentinel://")):
        from service.store.redis import RedisStore

        return RedisStore(queue)
    from service.store.sqlite import SqliteStore

    return SqliteStore(data_dir / "service.sqlite3")
