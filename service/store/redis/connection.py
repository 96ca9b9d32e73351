"""The connection the parts of `RedisStore` share: one client on a bounded pool, the key
prefix, and the runner of the Lua scripts with one cache of their hashes for all of them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError


class RedisConnection:
    """A Redis client whose keys all live under `<prefix>:`; `run` executes a store script."""

    def __init__(self, url: str, prefix: str, *, timeout: float, max_connections: int) -> None:
        # Redis runs one command at a time: past a few dozen connections more only cost
        # memory, so callers beyond the pool wait for a connection (up to `timeout`).
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout, decode_responses=True,
            socket_timeout=timeout, socket_connect_timeout=timeout)
        self.redis = aioredis.Redis.from_pool(pool)
        self.prefix = prefix
        self._shas: dict[str, str] = {}

    def key(self, *parts: str) -> str:
        """The key `<prefix>:<part>:...`, as the scripts' `k(...)` builds it."""
        return ":".join((self.prefix, *parts))

    async def run(self, script: str, *args: str | int | float) -> Any:
        """The result of `script` run with ARGV = the prefix, then `args` (no KEYS: every
        script builds its keys from the prefix)."""
        sha = self._shas.get(script)
        if sha is None:
            sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
            self._shas[script] = sha
        try:
            return await self.redis.evalsha(sha, 0, self.prefix, *args)
        except NoScriptError:  # first use, or Redis restarted: the script cache is empty
            await self.redis.script_load(script)
            return await self.redis.evalsha(sha, 0, self.prefix, *args)

    async def close(self) -> None:
        await self.redis.aclose()
