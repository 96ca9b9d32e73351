"""Fenced leases: which one of several processes does a job that only one may do.

A lease is held under a name by one holder at a time, in a shared backend (Redis) that lets it
run out unless it is renewed. `Lease.keep()` takes the lease and renews it every third of its
time to live; a process that dies stops renewing and another takes over once the lease runs
out. A clean stop lets go at once. The service's chain followers hold one per chain cursor.

The lease is also a fence: the backend's writes that only the holder may make check the holder
id in the same transaction (the followers' `Store.advance(holder=)`), so a process that lost its
lease without noticing (paused, cut off longer than the time to live) cannot write over the
process that holds it now.

Errors: a backend raises `LeaseUnavailable` when it cannot be asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("crypitor.leases")

LEASE_TTL = 10.0  # seconds: a dead holder's chain waits at most this long for a new one
# Our own view of the lease ends a little before the backend's: we count from before the
# request was sent, and a tenth of the time to live covers clocks that run apart.
MARGIN = 0.9
LET_GO_TIMEOUT = 2.0


class LeaseUnavailable(Exception):
    """The lease backend could not be asked; whether the lease is held is unknown."""


class LeaseBackend(Protocol):
    async def hold(self, name: str, holder: str, ttl: float) -> bool:
        """Take or renew the lease `name` for `ttl` seconds: True when `holder` holds it now
        (it was free, ran out, or was its own), False while another holder's runs.
        `LeaseUnavailable` when the backend cannot be asked."""

    async def let_go(self, name: str, holder: str) -> None:
        """End `holder`'s lease on `name` now; nothing when another holder has it."""


def new_holder() -> str:
    """An id no other process (on this or another machine) uses: host, pid and a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Lease:
    """One lease, as seen by this process. `what` names it in the log."""

    def __init__(self, backend: LeaseBackend, name: str, what: str, *, ttl: float = LEASE_TTL,
                 holder: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.backend = backend
        self.name = name
        self.what = what
        self.ttl = ttl
        self.holder = holder or new_holder()
        self._clock = clock
        self._until = 0.0  # held until then, by our clock
        self._renewed = asyncio.Event()
        self._told: bool | None = None  # what the log last said: held or not
        self._failing = False

    @property
    def held(self) -> bool:
        return self._clock() < self._until

    async def keep(self) -> None:
        """Take and renew the lease until cancelled; then let it go at once."""
        try:
            while True:
                await self.renew()
                await asyncio.sleep(self.ttl / 3)
        finally:
            await self.let_go()

    async def renew(self) -> bool:
        """Take or renew it once; whether it is held now. A backend that does not answer
        changes nothing: the lease we had runs out by our own clock."""
        asked = self._clock()
        try:
            got = await self.backend.hold(self.name, self.holder, self.ttl)
        except LeaseUnavailable as exc:
            if not self._failing:
                log.warning("%s: cannot renew the lease: %s", self.what, exc)
            self._failing = True
            return self.held
        self._failing = False
        if got:
            self._until = asked + self.ttl * MARGIN
            self._renewed.set()
            self._tell(True)
        else:
            self.lost()
        return got

    def lost(self) -> None:
        """Not held (any more): the backend said so, or refused a fenced write."""
        self._until = 0.0
        self._renewed.clear()
        self._tell(False)

    async def gained(self) -> None:
        """Return once the lease is held."""
        while not self.held:
            self._renewed.clear()
            await self._renewed.wait()

    async def let_go(self) -> None:
        if not self.held:
            return
        self._until = 0.0
        with contextlib.suppress(LeaseUnavailable, TimeoutError):
            async with asyncio.timeout(LET_GO_TIMEOUT):
                await self.backend.let_go(self.name, self.holder)

    def _tell(self, held: bool) -> None:
        if held == self._told:
            return
        self._told = held
        if held:
            log.info("%s: this process holds the lease (holder %s)", self.what, self.holder)
        else:
            log.info("%s: another process holds the lease; this one stands by", self.what)
