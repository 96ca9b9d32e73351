"""How much of one process's delivery capacity is in use: the autoscaler's steady-state
signal (`crypitor_webhook_saturation`).

A process delivers until either of two things runs out: its delivery slots (`max_in_flight`
claims held at once; slow endpoints fill them) or its CPU (Python runs on one core, so a
busy process tops out near 1.0 of a core whatever the machine has). Saturation is the larger
of the two shares, averaged over the last `window` seconds from a sample every `every`
seconds, so a scrape sees a steady value rather than one instant.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Saturation"]


class Saturation:
    def __init__(self, held_share: Callable[[], float], publish: Callable[[float], None], *,
                 window: float = 15.0, every: float = 1.0,
                 cpu: Callable[[], float] = time.process_time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._held_share, self._publish = held_share, publish
        self._every = every
        self._cpu, self._monotonic = cpu, monotonic
        size = max(1, round(window / every))
        self._held: deque[float] = deque(maxlen=size)
        self._marks: deque[tuple[float, float]] = deque(maxlen=size + 1)  # (wall, cpu)

    def sample(self) -> float:
        """Take one sample and return the saturation over the window so far."""
        self._held.append(self._held_share())
        self._marks.append((self._monotonic(), self._cpu()))
        held = sum(self._held) / len(self._held)
        (wall0, cpu0), (wall1, cpu1) = self._marks[0], self._marks[-1]
        cores = (cpu1 - cpu0) / (wall1 - wall0) if wall1 > wall0 else 0.0
        value = min(1.0, max(held, cores))
        self._publish(value)
        return value

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self._every)
