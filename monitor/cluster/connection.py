"""The cluster's Redis connection: `[cluster].redis` as a redis:// URL or, so that Redis is not
the cluster's single point of failure, a `redis+sentinel://host1,host2/service[/db]` URL (the
form `[service].queue` takes), whose clients ask the Sentinels for the current primary on
every new connection and so follow a failover.

`connect()` gives the asyncio client the cluster's tasks share, `connect_sync()` a blocking
client for code run in worker threads (the alert store). Both decode answers to `str`.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

from service.store import is_sentinel_url, parse_sentinel_url

REQUEST_TIMEOUT = 5.0  # seconds: every Redis call of the cluster


def _options(timeout: float) -> dict[str, Any]:
    return {"decode_responses": True, "socket_timeout": timeout,
            "socket_connect_timeout": timeout, "health_check_interval": 30}


def connect(url: str, *, timeout: float = REQUEST_TIMEOUT) -> aioredis.Redis:
    """An asyncio client of `url` (redis://, rediss:// or redis+sentinel://); connects lazily.
    ValueError when `url` is not a usable URL (the message never holds its password)."""
    if is_sentinel_url(url):
        address = parse_sentinel_url(url)
        sentinel = AsyncSentinel(address.sentinels, sentinel_kwargs={
            "socket_timeout": timeout, "socket_connect_timeout": timeout})
        client: aioredis.Redis = sentinel.master_for(
            address.service_name, db=address.db, username=address.username,
            password=address.password, **_options(timeout))
        return client
    return aioredis.Redis.from_url(url, **_options(timeout))


def connect_sync(url: str, *, timeout: float = REQUEST_TIMEOUT) -> redis.Redis:
    """A blocking client of `url`, as `connect()`; safe to share between threads."""
    if is_sentinel_url(url):
        address = parse_sentinel_url(url)
        sentinel = Sentinel(address.sentinels, sentinel_kwargs={
            "socket_timeout": timeout, "socket_connect_timeout": timeout})
        client: redis.Redis = sentinel.master_for(
            address.service_name, db=address.db, username=address.username,
            password=address.password, **_options(timeout))
        return client
    return redis.Redis.from_url(url, **_options(timeout))
