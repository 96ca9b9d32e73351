"""Time for `core.supervisor.Supervisor` in tests: its backoff sleep is a gate the test opens
(or one that is always open), and each task's crash shows as a waiting restart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Gate:
    """An injected backoff sleep: records each delay and, unless `held` is False, waits until
    the test calls `open()`; `next_wait()` returns once a (re)start waits here."""

    def __init__(self, *, held: bool = True) -> None:
        self.delays: list[float] = []
        self.held = held
        self._waiting = asyncio.Event()
        self._open = asyncio.Event()

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        self._waiting.set()
        if self.held:
            await self._open.wait()
            self._open.clear()
        else:
            await asyncio.sleep(0)

    async def next_wait(self) -> None:
        await self._waiting.wait()
        self._waiting.clear()

    def open(self) -> None:
        self._open.set()


async def until(check: Callable[[], bool]) -> None:
    """Polls `check()` until it is true; the test's own timeout bounds the wait."""
    while not check():
        await asyncio.sleep(0.01)
