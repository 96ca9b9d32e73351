"""The connection the parts of `RedisStore` share: one client on a bounded pool, the key
prefix, and the runner of the Lua scripts with one cache of their hashes for all of them.

On a `redis+sentinel://` address (`sentinel`) the pool asks the Sentinels for the current
primary whenever it connects, so it follows a failover; a write that acknowledges events
(`run_replicated`) then also waits for one replica to have it (`WAIT`), since a failover
promotes a replica and loses what only the old primary had.
"""

from __future__ import annotations

import hashlib
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.exceptions import NoScriptError

from service import NotReplicated
from service.store.sentinel import is_sentinel_url, parse_sentinel_url

# How long an accepting write waits for a replica before it fails (503) rather than answering
# for an event that a failover could lose: replication on a healthy network takes milliseconds.
REPLICA_WAIT = 2.0


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """The Sentinel pool (connects to the primary the Sentinels name) with the blocking
    pool's bound: callers beyond `max_connections` wait rather than fail."""


class RedisConnection:
    """A Redis client whose keys all live under `<prefix>:`; `run` executes a store script."""

    def __init__(self, url: str, prefix: str, *, timeout: float, max_connections: int) -> None:
        # Redis runs one command at a time: past a few dozen connections more only cost
        # memory, so callers beyond the pool wait for a connection (up to `timeout`).
        self._sentinel: Sentinel | None = None
        self.replicas = 0  # how many replicas an acknowledging write waits for
        pool: aioredis.BlockingConnectionPool
        if is_sentinel_url(url):
            address = parse_sentinel_url(url)
            self._sentinel = Sentinel(
                address.sentinels,
                sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout})
            pool = _BlockingSentinelPool(  # type: ignore[no-untyped-call]
                address.service_name, self._sentinel, max_connections=max_connections,
                timeout=timeout, decode_responses=True, socket_timeout=timeout,
                socket_connect_timeout=timeout, db=address.db, username=address.username,
                password=address.password)
            self.replicas = 1
        else:
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=timeout, decode_responses=True,
                socket_timeout=timeout, socket_connect_timeout=timeout)
        self.redis = aioredis.Redis.from_pool(pool)
        self.prefix = prefix
        self._shas: dict[str, str] = {}

    def key(self, *parts: str) -> str:
        """The key `<prefix>:<part>:...`, as the scripts' `k(...)` builds it."""
        return ":".join((self.prefix, *parts))

    def _sha(self, script: str) -> str:
        sha = self._shas.get(script)
        if sha is None:
            sha = hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()
            self._shas[script] = sha
        return sha

    async def run(self, script: str, *args: str | int | float) -> Any:
        """The result of `script` run with ARGV = the prefix, then `args` (no KEYS: every
        script builds its keys from the prefix)."""
        sha = self._sha(script)
        try:
            return await self.redis.evalsha(sha, 0, self.prefix, *args)
        except NoScriptError:  # first use, Redis restarted, or a failover: the script cache
            await self.redis.script_load(script)  # of this primary lacks it
            return await self.redis.evalsha(sha, 0, self.prefix, *args)

    async def run_replicated(self, script: str, *args: str | int | float) -> Any:
        """`run`, and when replicas are expected, `WAIT` until one has the write: raises
        `NotReplicated` when none acknowledges within `REPLICA_WAIT` (the write stays on the
        primary; its outcome across a failover is unknown)."""
        if not self.replicas:
            return await self.run(script, *args)
        sha = self._sha(script)
        for attempt in range(2):
            # WAIT counts the writes of its own connection: one pipeline is one connection
            pipe = self.redis.pipeline(transaction=False)
            pipe.evalsha(sha, 0, self.prefix, *args)
            pipe.wait(self.replicas, round(REPLICA_WAIT * 1000))
            try:
                result, acknowledged = await pipe.execute()
            except NoScriptError:  # nothing was written; WAIT answered for nothing
                if attempt:
                    raise
                await self.redis.script_load(script)
                continue
            if int(acknowledged) < self.replicas:
                raise NotReplicated(
                    f"redis store: no replica acknowledged the write within {REPLICA_WAIT:g}s")
            return result
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self.redis.aclose()
        if self._sentinel is not None:
            await self._sentinel.aclose()
