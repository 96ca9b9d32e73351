"""Store backends for the contract suite: `store` and `store_factory` run a test once per
entry of BACKENDS (ids "sqlite", "redis", ...). Adding a backend is one entry there.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio

from service.models import Attempt, Claim, Endpoint, NewEvent
from service.store import Store
from service.store.redis import RedisStore
from service.store.sqlite import SqliteStore
from tests.support.redis_server import RedisKeyspace

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

# Builds a new, unopened store on the backend's storage; a second call after closing the
# first store is how the suite checks that nothing lives only in memory.
StoreFactory = Callable[[], Store]
# One backend: given the test's request (to reach fixtures such as tmp_path or a Redis
# server), provide fresh empty storage for the test and the factory bound to it.
Backend = Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[StoreFactory]]


@contextlib.asynccontextmanager
async def sqlite_backend(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    path: Path = request.getfixturevalue("tmp_path") / "service.sqlite3"
    yield lambda: SqliteStore(path)


@contextlib.asynccontextmanager
async def redis_backend(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    space: RedisKeyspace = request.getfixturevalue("redis_keyspace")
    yield lambda: RedisStore(space.url, prefix=space.prefix)


BACKENDS: dict[str, Backend] = {
    "sqlite": sqlite_backend,
    "redis": redis_backend,
}


@pytest_asyncio.fixture(params=list(BACKENDS))
async def store_factory(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    async with BACKENDS[request.param](request) as factory:
        yield factory


@pytest_asyncio.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[Store]:
    opened = store_factory()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def endpoint(endpoint_id: str, *types: str, disabled: bool = False,
             failing_since: datetime | None = None) -> Endpoint:
    """An endpoint with every field set, so round trips check them all."""
    return Endpoint(id=endpoint_id, url=f"https://hooks.example.com/{endpoint_id}",
                    secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", event_types=types,
                    rate_limit=2.5, description=f"endpoint {endpoint_id}", disabled=disabled,
                    disabled_reason="paused by hand" if disabled else "", created_at=NOW,
                    failing_since=failing_since)


async def accept_one(store: Store, kind: str = "order.paid", *, key: str | None = None,
                     at: datetime = NOW, data: object = None) -> str:
    (event_id,) = await store.accept([NewEvent(kind, data or {"n": 1}, key)], at)
    return event_id


def attempt(claim: Claim, at: datetime, status: int | None = 200) -> Attempt:
    """The next attempt of a claimed delivery, answered with `status` (None: no answer)."""
    return Attempt(number=claim.delivery.attempts + 1, at=at, duration=0.25, status_code=status,
                   error="" if status else "connection refused",
                   response_headers={"content-type": "text/plain"}, response_body="thanks")
