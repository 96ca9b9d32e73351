"""`core.supervisor.Supervisor`: a crash is logged with its traceback, counted and followed by
a restart after a backoff that doubles, is capped and starts over after a stable run; an
essential task is `down()` while it waits; cancellation is no crash; a task that returns is
done. Time is injected: the backoff sleeps are gates the test opens."""

from __future__ import annotations

import asyncio
import logging

import pytest

from core.supervisor import Backoff, Supervisor
from tests.support.supervision import Gate

pytestmark = pytest.mark.timeout(10)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_crash_is_logged_counted_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    crashes: list[str] = []
    gate = Gate()
    sup = Supervisor(crashes.append, sleep=gate.sleep)
    runs = 0
    again = asyncio.Event()

    async def work() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise OverflowError("boom")
        again.set()
        await asyncio.Event().wait()

    with caplog.at_level(logging.ERROR):
        task = sup.supervise("dispatcher", work, essential=True)
        await gate.next_wait()
        assert crashes == ["dispatcher"]
        assert sup.down() == ["dispatcher"]
        [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "dispatcher" in record.getMessage()
        assert record.exc_info is not None and record.exc_info[0] is OverflowError
        gate.open()
        await again.wait()
    assert runs == 2 and sup.down() == []
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert crashes == ["dispatcher"]  # cancellation is no crash


async def test_backoff_doubles_is_capped_and_resets_after_a_stable_run() -> None:
    gate, clock = Gate(), Clock()
    sup = Supervisor(sleep=gate.sleep, monotonic=clock,
                     backoff=Backoff(first=1.0, cap=4.0, stable_after=30.0))

    async def work() -> None:
        raise RuntimeError("again")

    task = sup.supervise("flaky", work)
    for _ in range(4):
        await gate.next_wait()
        gate.open()
    await gate.next_wait()
    assert gate.delays == [1.0, 2.0, 4.0, 4.0, 4.0]

    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    gate = Gate()
    sup = Supervisor(sleep=gate.sleep, monotonic=clock,
                     backoff=Backoff(first=1.0, cap=4.0, stable_after=30.0))
    runs = 0

    async def mixed() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:  # this run lasted long enough: the next delay starts over
            clock.now += 30.0
        raise RuntimeError("crash")

    task = sup.supervise("mixed", mixed)
    for _ in range(3):
        await gate.next_wait()
        gate.open()
    await gate.next_wait()
    assert gate.delays == [1.0, 2.0, 1.0, 2.0]
    await sup.stop()
    assert task.cancelled()


async def test_a_task_that_returns_is_done_and_not_essential_is_never_down() -> None:
    crashes: list[str] = []
    sup = Supervisor(crashes.append)

    async def once() -> None:
        return None

    task = sup.supervise("push", once, essential=True)
    await asyncio.wait_for(task, 5)
    assert crashes == [] and sup.down() == []

    gate = Gate()
    sup = Supervisor(crashes.append, sleep=gate.sleep)

    async def crash() -> None:
        raise ValueError("x")

    sup.supervise("poller", crash)
    await gate.next_wait()
    assert crashes == ["poller"] and sup.down() == []
    await sup.stop()


async def test_a_failing_counter_does_not_stop_the_restart() -> None:
    gate = Gate()

    def broken(_name: str) -> None:
        raise RuntimeError("registry gone")

    sup = Supervisor(broken, sleep=gate.sleep)

    async def crash() -> None:
        raise ValueError("x")

    sup.supervise("t", crash)
    await gate.next_wait()
    gate.open()
    await gate.next_wait()
    assert len(gate.delays) == 2
    await sup.stop()


def test_backoff_is_validated() -> None:
    with pytest.raises(ValueError):
        Backoff(first=2.0, cap=1.0)
    with pytest.raises(ValueError):
        Backoff(stable_after=-1.0)
