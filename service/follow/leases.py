"""The lease on a chain's cursor: which of the processes sharing a store follows the chain.

Every `crypitor service` on a Redis queue configures the same chains; the one holding the lease
on a chain's cursor follows it (`core.leases.Lease` keeps it), and `Store.advance(holder=)` is
the fence that refuses the others' writes. `CursorLeases` offers the store's cursor leases as a
lease backend.
"""

from __future__ import annotations

from typing import Protocol

from core.leases import LeaseUnavailable
from service import StoreError


class CursorLeaseStore(Protocol):
    async def hold_cursor(self, name: str, holder: str, ttl: float) -> bool: ...
    async def let_go_cursor(self, name: str, holder: str) -> None: ...


class CursorLeases:
    """`core.leases.LeaseBackend` on a store's cursor leases (`StoreError` becomes
    `LeaseUnavailable`)."""

    def __init__(self, store: CursorLeaseStore) -> None:
        self.store = store

    async def hold(self, name: str, holder: str, ttl: float) -> bool:
        try:
            return await self.store.hold_cursor(name, holder, ttl)
        except StoreError as exc:
            raise LeaseUnavailable(str(exc)) from exc

    async def let_go(self, name: str, holder: str) -> None:
        try:
            await self.store.let_go_cursor(name, holder)
        except StoreError as exc:
            raise LeaseUnavailable(str(exc)) from exc
