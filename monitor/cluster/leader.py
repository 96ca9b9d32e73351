"""One alerting leader per cluster: a fenced lease on `{p}:alerting:leader` (core.leases with
the Redis backend below) decides which instance evaluates, routes, sends and polls the bots.

On gaining the lease the leader loads everything from Redis (`Alerting.start`: states, router
groups, silences, external alerts, the outbox; result freshness from `{p}:latest`; the stream
cursor) and consumes `{p}:results` from where the stored states stand, each entry observed
with its location; on losing it (renewal refused, or a fenced write refused) it stops all of
that at once. `crypitor_cluster_alerting_leader` says whether this instance leads.

Errors: the lease backend raises `core.leases.LeaseUnavailable` when Redis cannot be asked;
the loops here log and retry, under the monitor's supervisor.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, Gauge
from redis.exceptions import RedisError

import catalog.metrics as m
from alerts import NotLeader
from alerts.alerting import Alerting
from alerts.quorum import QuorumEvaluator
from core.leases import Lease, LeaseUnavailable
from core.supervisor import Spawn
from monitor.cluster.alert_store import SEP, RedisAlertStore
from monitor.cluster.connection import connect
from monitor.cluster.membership import PREFIX

log = logging.getLogger("crypitor.cluster")

READ_BLOCK_MS = 1000  # one XREAD waits this long for entries, so a stop is seen soon
READ_COUNT = 500
CURSOR_EVERY = 1.0  # seconds: how often the cursor moves when no state changed
# KEYS[1]: the lease. ARGV: holder, ttl in ms. 1 when held by `holder` now.
_HOLD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""
_LET_GO = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

Labels = Callable[[str], Mapping[str, str] | None]  # a target's labels with `type`; None: gone


class RedisLeases:
    """`core.leases.LeaseBackend` in Redis: one key per lease, its value the holder."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    async def hold(self, name: str, holder: str, ttl: float) -> bool:
        try:
            return bool(await self._redis.eval(_HOLD, 1, name, holder, int(ttl * 1000)))
        except (RedisError, OSError) as exc:
            raise LeaseUnavailable(str(exc) or type(exc).__name__) from exc

    async def let_go(self, name: str, holder: str) -> None:
        try:
            await self._redis.eval(_LET_GO, 1, name, holder)
        except (RedisError, OSError) as exc:
            raise LeaseUnavailable(str(exc) or type(exc).__name__) from exc


def result_values(result: Mapping[str, Any]) -> dict[str, Any]:
    """`ProbeResult.named_values()` from its `as_json()`."""
    return {**dict(result.get("values") or {}), "success": bool(result.get("success")),
            "duration_seconds": float(result.get("duration_seconds") or 0.0),
            "failure_reason": result.get("failure_reason") or ""}


class AlertingLeader:
    """Runs `alerting` while this instance holds the lease. `run()` (supervised) takes part
    in the election until cancelled; `on_lead`/`on_stand_by` start and stop what else only
    the leader runs (bots, the service watch)."""

    def __init__(self, url: str, *, alerting: Alerting, store: RedisAlertStore,
                 evaluator: QuorumEvaluator, labels: Labels, lease: float,
                 registry: CollectorRegistry, spawn: Spawn, prefix: str = PREFIX,
                 on_lead: Callable[[], Awaitable[None]] | None = None,
                 on_stand_by: Callable[[], Awaitable[None]] | None = None) -> None:
        self.alerting, self.store, self.evaluator = alerting, store, evaluator
        self._labels, self._spawn = labels, spawn
        self._on_lead, self._on_stand_by = on_lead, on_stand_by
        self._redis = connect(url)
        self.lease = Lease(RedisLeases(self._redis), store.leader_key, "alerting",
                           ttl=lease, holder=store.holder)
        self._results, self._latest = f"{prefix}:results", f"{prefix}:latest"
        self._gauge = Gauge(m.CLUSTER_ALERTING_LEADER.name, m.CLUSTER_ALERTING_LEADER.help,
                            registry=registry)
        self._consumer: asyncio.Task[None] | None = None
        self.leading = False
        self._lost = asyncio.Event()
        alerting_lost = self.lease.lost

        def lost() -> None:  # a fenced write refused: stand by at once
            alerting_lost()
            self._lost.set()
        self.lost = lost

    async def run(self) -> None:
        keeper = asyncio.create_task(self.lease.keep(), name="alerting-lease")
        try:
            while True:
                await self.lease.gained()
                self._lost.clear()
                try:
                    await self._lead()
                except (RedisError, OSError, NotLeader) as exc:
                    log.warning("alerting: could not take over (%s); standing by", exc)
                    self.lease.lost()
                if self.leading:
                    await self._while_held()
                await self._stand_by()
        finally:
            with contextlib.suppress(Exception):
                await self._stand_by()
            keeper.cancel()  # lets the lease go
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def close(self) -> None:
        await self._redis.aclose()

    async def _while_held(self) -> None:
        step = min(0.25, self.lease.ttl / 10)
        while self.lease.held and not self._lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), step)

    async def _lead(self) -> None:
        log.info("alerting: this instance leads the cluster's alerting now")
        self.leading = True
        self._gauge.set(1)
        await self.alerting.start()
        latest: Any = await self._redis.hgetall(self._latest)
        for field, body in latest.items():
            target, _, location = str(field).partition(SEP)
            with contextlib.suppress(ValueError, KeyError, TypeError):
                started = _loads(body)["result"]["started_at"]
                self.evaluator.seen(target, location, datetime.fromisoformat(started))
        cursor = await asyncio.to_thread(self.store.stored_cursor)
        if cursor is None:  # the first leader ever: from now on
            last: Any = await self._redis.xrevrange(self._results, count=1)
            cursor = str(last[0][0]) if last else "0-0"
        self.store.cursor = cursor
        self._consumer = self._spawn("alerting-results", self._consume)
        if self._on_lead is not None:
            await self._on_lead()

    async def _stand_by(self) -> None:
        if not self.leading:
            return
        self.leading = False
        self._gauge.set(0)
        log.info("alerting: this instance stands by")
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
            self._consumer = None
        if self._on_stand_by is not None:
            await self._on_stand_by()
        await self.alerting.stop()

    async def _consume(self) -> None:
        """Results from the stream into the evaluator; the cursor is written with the
        states they changed, fenced (a deposed leader's progress is refused). Results that
        changed no state move the cursor at most every CURSOR_EVERY: a successor reading
        them again changes nothing either, and the write (an fsync on Redis) is spared."""
        loop = asyncio.get_running_loop()
        saved = loop.time()
        while True:
            cursor = self.store.cursor or "0-0"
            answer: Any = await self._redis.xread({self._results: cursor}, count=READ_COUNT,
                                             block=READ_BLOCK_MS)
            if not answer:
                continue
            for entry_id, fields in answer[0][1]:
                self._observe(fields)
                self.store.cursor = str(entry_id)
            dirty = self.evaluator.take_dirty()
            if not dirty and loop.time() - saved < CURSOR_EVERY:
                continue
            saved = loop.time()
            try:
                await asyncio.to_thread(self.store.save_states, dirty)
            except NotLeader as exc:
                log.warning("alerting: %s; standing by", exc)
                self.lost()
                return

    def _observe(self, fields: Mapping[str, str]) -> None:
        target, location = fields.get("target", ""), fields.get("location", "")
        labels = self._labels(target)
        if labels is None:  # not configured here (any more)
            return
        try:
            result = _loads(fields.get("result", "{}"))
        except ValueError:
            log.warning("alerting: a result of %s from %s does not parse", target, location)
            return
        at = result.get("started_at")
        self.alerting.observe(target, labels, result_values(result),
                              str(result.get("detail") or ""), location)
        if at:
            with contextlib.suppress(ValueError, TypeError):
                self.evaluator.seen(target, location, datetime.fromisoformat(at))


def _loads(text: str) -> Any:
    return json.loads(text)
