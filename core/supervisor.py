"""Runs the long-running tasks of a process so that none dies silently (STYLE.md rule 11c).

A crash, an exception escaping a task's coroutine (cancellation is not one), is logged at
ERROR with its traceback and the task's name, reported to `on_crash(name)` (the owner counts
it in `crypitor_task_crashes_total{task}`), and the task starts again after a backoff that
doubles up to a cap and starts over once a run lasted `stable_after`. While an essential task
waits for its restart, `down()` names it and the owner's `/readyz` answers 503.

A task that returns on its own is done and not restarted. Each owner keeps the handles
`supervise` returns and cancels them in its own order at shutdown; `stop()` cancels what is
left. Errors: `ValueError` for a `Backoff` whose delays do not make sense, nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Backoff", "Spawn", "Supervisor"]

log = logging.getLogger("crypitor.supervisor")

Factory = Callable[[], Awaitable[None]]  # a fresh coroutine for every (re)start
Sleep = Callable[[float], Awaitable[None]]


class Spawn(Protocol):
    """What a component that starts background tasks takes: `Supervisor.supervise`, or a
    stand-in with the same shape."""

    def __call__(self, name: str, factory: Factory, *,
                 essential: bool = False) -> asyncio.Task[None]: ...


@dataclass(frozen=True)
class Backoff:
    """Seconds before a restart: `first`, doubled after each crash up to `cap`; back to
    `first` when the run that crashed had lasted `stable_after` or longer."""

    first: float = 1.0
    cap: float = 60.0
    stable_after: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.first <= self.cap:
            raise ValueError("backoff delays must satisfy 0 <= first <= cap")
        if self.stable_after < 0:
            raise ValueError("backoff stable_after must not be negative")


def _ignore(_name: str) -> None:
    return None


class Supervisor:
    def __init__(self, on_crash: Callable[[str], None] = _ignore, *,
                 backoff: Backoff = Backoff(), sleep: Sleep = asyncio.sleep,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._on_crash = on_crash
        self._backoff = backoff
        self._sleep = sleep
        self._monotonic = monotonic
        self._tasks: list[asyncio.Task[None]] = []
        self._down: set[str] = set()

    def supervise(self, name: str, factory: Factory, *,
                  essential: bool = False) -> asyncio.Task[None]:
        """Runs `factory()` now, and again after each crash; the handle cancels it for good."""
        task = asyncio.create_task(self._keep(name, factory, essential), name=name)
        self._tasks.append(task)
        task.add_done_callback(self._forget)
        return task

    def down(self) -> list[str]:
        """The essential tasks that crashed and wait for their restart, by name."""
        return sorted(self._down)

    async def stop(self) -> None:
        """Cancels the tasks still running, the last started first, and waits for them."""
        for task in reversed(list(self._tasks)):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _forget(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    async def _keep(self, name: str, factory: Factory, essential: bool) -> None:
        b = self._backoff
        delay = b.first
        while True:
            started = self._monotonic()
            try:
                await factory()
                return
            except Exception:  # CancelledError is a BaseException: it ends the task
                if self._monotonic() - started >= b.stable_after:
                    delay = b.first
                log.error("task %s crashed; restarting it in %gs", name, delay, exc_info=True)
                try:
                    self._on_crash(name)
                except Exception:  # counting must not stop the restart
                    log.exception("counting the crash of task %s failed", name)
            if essential:
                self._down.add(name)
            try:
                await self._sleep(delay)
            finally:
                self._down.discard(name)
            delay = min(b.cap, delay * 2 if delay else b.first)
