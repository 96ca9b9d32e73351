"""The Redis backend of `service.store.Store`: several service processes share one queue.

`store` is the queue and endpoints, and holds the other parts: `connection` (pool, key prefix,
script runner; through Sentinel for a redis+sentinel:// address, see `service.store.sentinel`)
and `monitors` (address monitors and follower cursors). `codec` turns hashes
into models and back; the Lua scripts, one atomic step each, are in `lua/`.
"""

from service.store.redis.store import RedisStore

__all__ = ["RedisStore"]
