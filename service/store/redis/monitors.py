"""The address-monitor and chain-follower part of `RedisStore`: monitors, follower cursors,
their leases and each monitor's history. It runs on the connection (pool and script runner)
the store holds and shares with its queue part.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from service import CursorTaken, StoreError
from service.models import MatchRecord, Monitor, MonitorEvent, NewEvent, Stored
from service.store.redis.codec import (
    decode_monitor,
    decode_monitor_event,
    events_args,
    flat_hash,
    monitor_fields,
    refused,
    translated,
)
from service.store.redis.connection import RedisConnection
from service.store.redis.lua import monitors as monitor_scripts


class RedisMonitors:
    """The monitor and follower operations of `RedisStore`, on the store's connection."""

    def __init__(self, conn: RedisConnection) -> None:
        self._conn = conn

    # --- address monitors and followers ------------------------------------------------

    async def put_monitor(self, monitor: Monitor) -> None:
        with translated("put_monitor"):
            await self._conn.run(monitor_scripts.PUT_MONITOR, monitor.id,
                                 *monitor_fields(monitor))

    async def replace_monitor(self, monitor: Monitor) -> bool:
        with translated("replace_monitor"):
            done = await self._conn.run(monitor_scripts.REPLACE_MONITOR, monitor.id,
                                        monitor.revision, *monitor_fields(monitor))
        return bool(done)

    async def get_monitor(self, monitor_id: str) -> Monitor | None:
        with translated("get_monitor"):
            h = await self._conn.redis.hgetall(self._conn.key("mon", monitor_id))
        return decode_monitor({str(k): str(v) for k, v in h.items()}) if h else None

    async def list_monitors(self, chain: str | None = None) -> list[Monitor]:
        with translated("list_monitors"):
            found = await self._conn.run(monitor_scripts.LIST_MONITORS,
                                         *(() if chain is None else (chain,)))
        return [decode_monitor(flat_hash(h)) for h in found]

    async def delete_monitor(self, monitor_id: str) -> bool:
        with translated("delete_monitor"):
            return bool(await self._conn.run(monitor_scripts.DELETE_MONITOR, monitor_id))

    async def monitors_version(self) -> int:
        with translated("monitors_version"):
            value = await self._conn.redis.get(self._conn.key("monver"))
        return int(value or 0)

    async def get_cursor(self, name: str) -> dict[str, Any] | None:
        with translated("get_cursor"):
            value = await self._conn.redis.get(self._conn.key("cursor", name))
        return None if value is None else dict(json.loads(value))

    async def advance(self, name: str, state: Mapping[str, Any], events: Sequence[NewEvent],
                      matches: Sequence[MatchRecord], now: datetime, *,
                      holder: str | None = None) -> list[Stored]:
        if len(events) != len(matches):
            raise ValueError(f"{len(events)} events but {len(matches)} matches")
        args = events_args(events, now)
        proposed = [str(args[4 + 4 * i]) for i in range(len(events))]  # an event's own id
        # after the count, before the events
        args[4:4] = [name, json.dumps(dict(state)), holder or ""]
        for m in matches:
            args += [m.monitor_id, m.kind, m.tx_hash.lower(),
                     " ".join(a.lower() for a in m.addresses), m.block_number]
        try:
            with translated("advance"):
                ids = await self._conn.run_replicated(monitor_scripts.ADVANCE, *args)
        except StoreError as exc:
            if refused(exc, "CURSORTAKEN"):
                raise CursorTaken(f"cursor {name}: another process holds it") from None
            raise
        # a known idempotency key answers the first event's id instead of the one proposed
        return [Stored(str(i), str(i) == p) for i, p in zip(ids, proposed, strict=True)]

    async def hold_cursor(self, name: str, holder: str, ttl: float) -> bool:
        with translated("hold_cursor"):
            got = await self._conn.run(monitor_scripts.HOLD_CURSOR, name, holder,
                                       max(1, round(ttl * 1000)))
        return bool(got)

    async def let_go_cursor(self, name: str, holder: str) -> None:
        with translated("let_go_cursor"):
            await self._conn.run(monitor_scripts.LET_GO_CURSOR, name, holder)

    async def monitor_events(self, monitor_id: str, tx_hash: str | None = None,
                             address: str | None = None, limit: int = 100,
                             before: str | None = None) -> list[MonitorEvent]:
        try:
            with translated("monitor_events"):
                found = await self._conn.run(monitor_scripts.MONITOR_EVENTS, monitor_id,
                                             (tx_hash or "").lower(), (address or "").lower(),
                                             limit, before or "")
        except StoreError as exc:
            if refused(exc, "NOTINHISTORY"):
                raise ValueError(f"{before} is not in the history of {monitor_id}") from None
            raise
        return [decode_monitor_event(fields) for fields in found]

    async def endpoint_monitors(self, endpoint_id: str, limit: int = 100) -> list[str]:
        with translated("endpoint_monitors"):
            found = await self._conn.run(monitor_scripts.ENDPOINT_MONITORS, endpoint_id, limit)
        return [str(i) for i in found]
