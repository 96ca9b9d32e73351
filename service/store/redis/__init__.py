"""The Redis backend of `service.store.Store`: several service processes share one queue.

`store` holds the queue half, `monitors` the address monitors and follower cursors, `codec`
turns hashes into models and back; the Lua scripts, one atomic step each, are in `lua/`.
"""

from service.store.redis.store import RedisStore

__all__ = ["RedisStore"]
