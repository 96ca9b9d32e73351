"""A real local HTTP sink for alert webhooks: records every POST (headers and body) and
answers from a script (status, Retry-After) or 200."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio
from aiohttp import web

from tests.support.web import serve


@dataclass(frozen=True)
class Posted:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class AlertSink:
    url: str = ""  # base URL; POSTs to any path are taken
    posted: list[Posted] = field(default_factory=list)
    script: list[tuple[int, str | None]] = field(default_factory=list)  # (status, Retry-After)

    def answer(self, status: int, retry_after: str | None = None) -> None:
        """The answer to the next POST (then 200 again)."""
        self.script.append((status, retry_after))

    async def handle(self, request: web.Request) -> web.Response:
        self.posted.append(Posted(request.path, dict(request.headers), await request.read()))
        status, wait = self.script.pop(0) if self.script else (200, None)
        headers = {"Retry-After": wait} if wait is not None else {}
        return web.Response(status=status, text="ok" if status < 300 else "no",
                            headers=headers)


@pytest_asyncio.fixture
async def alert_sink() -> AsyncIterator[AlertSink]:
    sink = AlertSink()
    app = web.Application()
    app.router.add_post("/{tail:.*}", sink.handle)
    async with serve(app) as base:
        sink.url = base
        yield sink
