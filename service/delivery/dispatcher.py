"""The dispatcher: claims due deliveries, posts them signed, and settles each by the state
machine's verdict. Per-endpoint concurrency and rate limits; a bounded number in flight.

Requests go through `wire.WebhookClient` (pooled keep-alive connections, the SSRF guard at
connect time); every request has `request_timeout`; redirects are never followed. On stop,
in-flight deliveries get a grace period, then whatever is left is cancelled and released to
the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.clock import Clock, utc_now
from service import DeliveryFailed, StoreError, UnsafeTarget
from service.delivery.pacing import Pacing, RateLimit
from service.delivery.state import Policy, decide
from service.delivery.wire import WebhookClient
from service.metrics import ServiceMetrics
from service.models import Attempt, Claim, Endpoint, Verdict
from service.store import Store

log = logging.getLogger(__name__)
Sign = Callable[[Endpoint, str, int, bytes], str]  # the webhook-signature header's value
IDLE_POLL = 0.5  # seconds between looks at the queue when nothing woke us


@dataclass(frozen=True)
class DispatchConfig:
    policy: Policy
    request_timeout: float = 15.0
    max_in_flight_per_endpoint: int = 10
    max_in_flight: int = 512
    claim_batch: int = 128
    # A claim that would wait longer than this in its endpoint's lane is put off instead
    # (released with a time, see `service.delivery.pacing`), at most `max_put_off` seconds.
    max_lane_wait: float = 2.0
    max_put_off: float = 60.0

    @property
    def lease(self) -> float:
        # long enough for a wait on a busy endpoint plus the request itself; short enough
        # that another process takes over a dead one's work soon
        return max(10.0, self.request_timeout * 4)


def payload(claim: Claim, stamp: str | None = None) -> bytes:
    """`{"id", "type", "timestamp", "data"}` with the data exactly as the client sent it. The
    id (ours) and the type (letters, digits and `._:-`) never need escaping. `stamp`: the
    event's `accepted_at.isoformat()`, when the caller has it already."""
    e = claim.event
    if stamp is None:
        stamp = e.accepted_at.isoformat()
    return (f'{{"id":"{e.id}","type":"{e.type}","timestamp":"{stamp}",'
            f'"data":{e.data_json}}}').encode()


class _Lane:
    """One endpoint's claimed deliveries, in claim order, and how many workers take from it."""

    __slots__ = ("waiting", "workers")

    def __init__(self) -> None:
        self.waiting: deque[Claim] = deque()
        self.workers = 0


class Dispatcher:
    """Claims in batches into per-endpoint lanes; each lane is worked by up to
    `max_in_flight_per_endpoint` worker tasks that deliver one claim after another, so a
    delivery costs no task, semaphore or wait of its own."""

    def __init__(self, store: Store, client: WebhookClient, sign: Sign,
                 metrics: ServiceMetrics, config: DispatchConfig,
                 clock: Clock = utc_now,
                 rand: Callable[[], float] = random.random) -> None:
        self._store, self._client, self._sign = store, client, sign
        self._metrics, self._cfg, self._clock, self._rand = metrics, config, clock, rand
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()  # set whenever a held claim is settled
        self._stopping = False
        self._held = 0  # claimed and not yet settled: waiting in a lane or in flight
        self._running = 0  # of which in flight
        self._lanes: dict[str, _Lane] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._current: dict[asyncio.Task[None], Claim] = {}  # what each worker is attempting
        self._outbox: list[tuple[Claim, Attempt, Verdict, datetime]] = []  # to record
        self._settler: asyncio.Task[None] | None = None  # records the outbox, in batches
        self._limits: dict[str, RateLimit] = {}
        self._pacing = Pacing(config.max_in_flight_per_endpoint, config.max_lane_wait,
                              config.max_put_off)
        # a lease must outlast an attempt started now by this much (see `_work`)
        self._margin = timedelta(seconds=config.request_timeout + 1.0)
        self._stamps: dict[datetime, str] = {}  # accepted_at -> its isoformat, for payloads

    def wake(self) -> None:
        self._wakeup.set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def held_share(self) -> float:
        """Share of the delivery slots (`max_in_flight`) held now: claimed and not settled."""
        return min(1.0, self._held / self._cfg.max_in_flight)

    async def run(self) -> None:
        batch = min(self._cfg.claim_batch, self._cfg.max_in_flight)
        while not self._stopping:
            free = self._cfg.max_in_flight - self._held
            # claim in whole batches while work is still waiting in the lanes: one claim per
            # settled delivery would double the store's writes
            if free <= 0 or (free < batch and self._held > self._running):
                self._room.clear()
                await self._room.wait()
                continue
            want = min(free, batch)
            self._wakeup.clear()  # before the claim: a wake-up during it is not lost
            now = self._clock()
            busy = self._busy(now)
            self._metrics.busy.set(len(busy))
            try:
                claims = await self._store.claim(want, now, self._cfg.lease, busy)
            except StoreError:
                log.exception("cannot claim deliveries; retrying")
                claims = []
            if self.stopping:  # stop() began while we were claiming: hand them back
                await self._store.release(claims)
                return
            await self._take(claims)
            if len(claims) < want:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), IDLE_POLL)

    async def _take(self, claims: list[Claim]) -> None:
        """Into the lanes, except what a busy endpoint could not start within
        `max_lane_wait`: that goes back to the store, each claim due when its endpoint
        should be ready for it (so it is claimed again once, not over and over)."""
        later: list[Claim] = []
        times: list[datetime] = []
        now = self._clock()
        for claim in claims:
            lane = self._lanes.get(claim.endpoint.id)
            at = self._pacing.put_off(claim.endpoint, len(lane.waiting) if lane else 0, now)
            if at is None:
                self._enqueue(claim)
            else:
                later.append(claim)
                times.append(at)
        if later:
            try:
                await self._store.release(later, times)
            except StoreError:  # their leases run out instead: claimed again a bit later
                log.warning("cannot put off %d deliveries for busy endpoints", len(later),
                            exc_info=True)

    def _busy(self, now: datetime) -> dict[str, datetime]:
        """Endpoints whose further work waits (see `Pacing.busy`)."""
        return self._pacing.busy(now, {k: len(lane.waiting) for k, lane in self._lanes.items()})

    def _enqueue(self, claim: Claim) -> None:
        self._held += 1
        key = claim.endpoint.id
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.waiting.append(claim)
        if lane.workers < self._cfg.max_in_flight_per_endpoint:
            lane.workers += 1
            task = asyncio.create_task(self._work(key, lane))
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def _work(self, key: str, lane: _Lane) -> None:
        me = asyncio.current_task()
        assert me is not None
        try:
            while lane.waiting and not self._stopping:
                claim = lane.waiting.popleft()
                now = self._clock()
                if claim.leased_until is not None and now + self._margin >= claim.leased_until:
                    # it waited in the lane too long: the lease may end before an attempt
                    # started now is recorded, and another claim (ours or another process's)
                    # takes it then; sending now could duplicate
                    self._held -= 1
                    self._room.set()
                    continue
                self._current[me] = claim
                self._running += 1
                try:
                    attempt, verdict, now = await self._try(claim, now)
                except Exception:
                    # a bug of ours, not the endpoint's: the lane goes on with its next claim,
                    # and this one is tried again once its lease runs out
                    self._held -= 1
                    self._room.set()
                    log.exception("delivery %s: the attempt failed in the dispatcher",
                                  claim.delivery.id)
                    self._metrics.task_crashed("delivery-worker")
                    continue
                except BaseException:
                    self._held -= 1  # cancelled: stop() releases the claim
                    self._room.set()
                    raise
                finally:
                    del self._current[me]
                    self._running -= 1
                self._pacing.note(key, attempt.duration)
                # the slot is free for the next attempt while this one is recorded
                self._outbox.append((claim, attempt, verdict, now))
                if self._settler is None or self._settler.done():
                    self._settler = asyncio.create_task(self._settle())
        finally:
            lane.workers -= 1
            if not lane.workers and not lane.waiting and self._lanes.get(key) is lane:
                del self._lanes[key]

    async def stop(self, grace: float, hurry: asyncio.Event | None = None) -> None:
        """Stop claiming; give deliveries in flight `grace` seconds to finish (less when
        `hurry` is set meanwhile); release the rest untouched (in flight and still waiting)
        so they are due again at once."""
        self._stopping = True
        self.wake()
        self._room.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        hurried = asyncio.ensure_future(hurry.wait()) if hurry is not None else None
        try:
            while self._workers:  # workers end after their current delivery
                remaining = deadline - loop.time()
                if remaining <= 0 or (hurried is not None and hurried.done()):
                    break
                waited: list[asyncio.Future[Any]] = list(self._workers)
                if hurried is not None:
                    waited.append(hurried)
                await asyncio.wait(waited, timeout=remaining,
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            if hurried is not None:
                hurried.cancel()
        left = list(self._current.values())
        workers = list(self._workers)
        for task in workers:
            task.cancel()
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)
        left += [claim for lane in self._lanes.values() for claim in lane.waiting]
        self._lanes.clear()
        if self._settler is not None:  # attempts made are recorded, not repeated
            await asyncio.gather(self._settler, return_exceptions=True)
        if left:
            await self._store.release(left)

    async def _try(self, claim: Claim, now: datetime) -> tuple[Attempt, Verdict, datetime]:
        """The attempt, starting at `now` unless the endpoint's rate limit makes it wait."""
        endpoint = claim.endpoint
        if endpoint.rate_limit:
            limit = self._limits.get(endpoint.id)
            if limit is None or limit.rate != endpoint.rate_limit:
                limit = self._limits[endpoint.id] = RateLimit(endpoint.rate_limit)
            await limit.take()
            now = self._clock()
        attempt, headers = await self._attempt(claim, now)
        now = self._clock()
        return attempt, decide(claim, attempt.status_code, headers, now, self._cfg.policy,
                               self._rand), now

    async def _settle(self) -> None:
        """Record finished attempts: whatever finished while the last write ran goes into
        the next one, so a busy dispatcher writes once per batch, not once per delivery."""
        while self._outbox:
            done, self._outbox = self._outbox, []
            try:
                await self._store.settle_many([(c, a, v) for c, a, v, _ in done])
            except StoreError:  # the leases run out and the deliveries are tried again
                log.exception("cannot record %d delivery attempts; they will be retried",
                              len(done))
                continue
            except Exception:  # a bug of ours: counted, and the leases run out as above
                log.exception("recording %d delivery attempts failed", len(done))
                self._metrics.task_crashed("delivery-settler")
                continue
            finally:
                self._held -= len(done)
                self._room.set()
            for claim, _, verdict, now in done:
                self._count(claim, verdict, now)

    async def _attempt(self, claim: Claim,
                       started: datetime) -> tuple[Attempt, Mapping[str, str]]:
        # the events of a batch share their acceptance time: each is formatted once
        accepted = claim.event.accepted_at
        iso = self._stamps.get(accepted)
        if iso is None:
            if len(self._stamps) > 4096:
                self._stamps.clear()
            iso = self._stamps[accepted] = accepted.isoformat()
        body = payload(claim, iso)
        t0 = time.monotonic()
        number = claim.delivery.attempts + 1
        msg_id, stamp = claim.delivery.id, int(started.timestamp())
        signature = self._sign(claim.endpoint, msg_id, stamp, body)
        # ids are ours and signatures base64: nothing in these lines needs escaping
        head = (f"webhook-id: {msg_id}\r\nwebhook-timestamp: {stamp}\r\n"
                f"webhook-signature: {signature}\r\n").encode()
        try:
            answer = await self._client.post(claim.endpoint.url, head, body)
        except (DeliveryFailed, UnsafeTarget, TimeoutError, OSError) as exc:
            return Attempt(number, started, time.monotonic() - t0, None,
                           error=_describe(exc, self._cfg.request_timeout)), {}
        return Attempt(number, started, time.monotonic() - t0, answer.status,
                       response_headers=answer.headers, response_body=answer.body), \
            answer.headers

    def _count(self, claim: Claim, verdict: Verdict, now: datetime) -> None:
        self._metrics.observe_delivery(verdict, claim.event.accepted_at, now)
        if verdict.disable_endpoint:
            log.warning("endpoint %s disabled: %s", claim.endpoint.id, verdict.disable_endpoint,
                        extra={"endpoint_id": claim.endpoint.id})


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, UnsafeTarget | DeliveryFailed):  # worded for the attempt already
        return str(exc)
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
