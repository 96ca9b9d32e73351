"""Who follows a chain when several processes share one store.

Every `crypitor service` on a Redis queue configures the same chains, but one process follows
each chain: the one holding the lease on its cursor. `Lease.keep()` takes the lease
(`Store.hold_cursor`) and renews it every third of its time to live; a process that dies stops
renewing and another takes over once the lease runs out, resuming at the saved cursor. A clean
stop lets go at once.

The lease is also a fence: the follower passes its holder id to `Store.advance`, which writes
nothing (`CursorTaken`) unless that holder still holds the lease, checked in the same
transaction. A process that lost its lease without noticing (paused, cut off from Redis
longer than the time to live) therefore cannot move a cursor another process has moved on.
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

from service import StoreError

log = logging.getLogger("crypitor.service.leases")

LEASE_TTL = 10.0  # seconds: a dead holder's chain waits at most this long for a new one
# Our own view of the lease ends a little before the store's: we count from before the
# request was sent, and a tenth of the time to live covers clocks that run apart.
MARGIN = 0.9
LET_GO_TIMEOUT = 2.0


class LeaseStore(Protocol):
    async def hold_cursor(self, name: str, holder: str, ttl: float) -> bool: ...
    async def let_go_cursor(self, name: str, holder: str) -> None: ...


def new_holder() -> str:
    """An id no other process (on this or another machine) uses: host, pid and a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Lease:
    """The lease on one cursor, as seen by this process. `what` names it in the log."""

    def __init__(self, store: LeaseStore, name: str, what: str, *, ttl: float = LEASE_TTL,
                 holder: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
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
        """Take or renew it once; whether it is held now. A store that does not answer
        changes nothing: the lease we had runs out by our own clock."""
        asked = self._clock()
        try:
            got = await self.store.hold_cursor(self.name, self.holder, self.ttl)
        except StoreError as exc:
            if not self._failing:
                log.warning("%s: cannot renew the follower lease: %s", self.what, exc)
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
        """Not held (any more): the store said so, or refused a fenced write."""
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
        with contextlib.suppress(StoreError, TimeoutError):
            async with asyncio.timeout(LET_GO_TIMEOUT):
                await self.store.let_go_cursor(self.name, self.holder)

    def _tell(self, held: bool) -> None:
        if held == self._told:
            return
        self._told = held
        if held:
            log.info("%s: this process follows it (lease holder %s)", self.what, self.holder)
        else:
            log.info("%s: another process follows it; this one stands by", self.what)
