"""The dispatcher: claims due deliveries, posts them signed, and settles each by the state
machine's verdict. Per-endpoint concurrency and rate limits; a bounded number in flight.

One aiohttp session with pooled connections (its connector carries the SSRF guard); every
request has `request_timeout`; redirects are never followed. On stop, in-flight deliveries
get a grace period, then whatever is left is cancelled and released to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from service import ServiceError, StoreError, UnsafeTarget
from service.delivery_state import Policy, decide
from service.metrics import ServiceMetrics
from service.models import Attempt, Claim, DeliveryState, Endpoint, Verdict
from service.store import Store

log = logging.getLogger(__name__)
Sign = Callable[[Endpoint, str, int, bytes], Mapping[str, str]]
KEPT_HEADERS = ("content-type", "retry-after", "location", "server", "x-request-id")
BODY_KEPT = 4096
IDLE_POLL = 0.5  # seconds between looks at the queue when nothing woke us


@dataclass(frozen=True)
class DispatchConfig:
    policy: Policy
    request_timeout: float = 15.0
    max_in_flight_per_endpoint: int = 10
    max_in_flight: int = 512
    claim_batch: int = 128

    @property
    def lease(self) -> float:
        # long enough for a wait on a busy endpoint plus the request itself; short enough
        # that another process takes over a dead one's work soon
        return max(10.0, self.request_timeout * 4)


class _RateLimit:
    """A token bucket: at most `rate` starts per second, bursts of one second's worth."""

    def __init__(self, rate: float) -> None:
        self.rate, self.tokens, self.at = rate, max(1.0, rate), time.monotonic()

    async def take(self) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


def payload(claim: Claim) -> bytes:
    e = claim.event
    return json.dumps({"id": e.id, "type": e.type, "timestamp": e.accepted_at.isoformat(),
                       "data": e.data}, separators=(",", ":"), ensure_ascii=False).encode()


class Dispatcher:
    def __init__(self, store: Store, session: aiohttp.ClientSession, sign: Sign,
                 metrics: ServiceMetrics, config: DispatchConfig,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 rand: Callable[[], float] = random.random) -> None:
        self._store, self._session, self._sign = store, session, sign
        self._metrics, self._cfg, self._clock, self._rand = metrics, config, clock, rand
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._tasks: dict[asyncio.Task[None], Claim] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._limits: dict[str, _RateLimit] = {}

    def wake(self) -> None:
        self._wakeup.set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def run(self) -> None:
        while not self._stopping:
            free = self._cfg.max_in_flight - len(self._tasks)
            if free <= 0:
                await asyncio.wait(list(self._tasks), return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                claims = await self._store.claim(min(free, self._cfg.claim_batch),
                                                 self._clock(), self._cfg.lease)
            except StoreError:
                log.exception("cannot claim deliveries; retrying")
                claims = []
            if self.stopping:  # stop() began while we were claiming: hand them back
                await self._store.release(claims)
                return
            for claim in claims:
                task = asyncio.create_task(self._deliver(claim))
                self._tasks[task] = claim
                task.add_done_callback(self._tasks.pop)
            if len(claims) < min(free, self._cfg.claim_batch):
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), IDLE_POLL)

    async def stop(self, grace: float) -> None:
        """Stop claiming; let in-flight deliveries finish for `grace` seconds; release the
        rest untouched so they are due again at once (nothing accepted is lost)."""
        self._stopping = True
        self.wake()
        deadline = asyncio.get_running_loop().time() + grace
        while self._tasks:  # the set may grow once more from a claim under way
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            await asyncio.wait(list(self._tasks), timeout=remaining)
        left = dict(self._tasks)
        for task in left:
            task.cancel()
        if left:
            await asyncio.gather(*left, return_exceptions=True)
            await self._store.release(list(left.values()))

    async def _deliver(self, claim: Claim) -> None:
        endpoint = claim.endpoint
        slots = self._slots.get(endpoint.id)
        if slots is None:
            slots = self._slots[endpoint.id] = asyncio.Semaphore(
                self._cfg.max_in_flight_per_endpoint)
        async with slots:
            if endpoint.rate_limit:
                limit = self._limits.get(endpoint.id)
                if limit is None or limit.rate != endpoint.rate_limit:
                    limit = self._limits[endpoint.id] = _RateLimit(endpoint.rate_limit)
                await limit.take()
            attempt, headers = await self._attempt(claim)
        now = self._clock()
        verdict = decide(claim, attempt.status_code, headers, now, self._cfg.policy,
                         self._rand)
        try:
            await self._store.settle(claim, attempt, verdict)
        except StoreError:  # the lease runs out and the delivery is tried again
            log.exception("cannot record delivery %s; it will be retried", claim.delivery.id)
            return
        self._count(claim, verdict, now)

    async def _attempt(self, claim: Claim) -> tuple[Attempt, Mapping[str, str]]:
        body = payload(claim)
        started, t0 = self._clock(), time.monotonic()
        number = claim.delivery.attempts + 1
        headers = {"Content-Type": "application/json", "User-Agent": "crypitor-webhooks/1",
                   **self._sign(claim.endpoint, claim.delivery.id, int(started.timestamp()),
                                body)}
        timeout = aiohttp.ClientTimeout(total=self._cfg.request_timeout)
        try:
            async with self._session.post(claim.endpoint.url, data=body, headers=headers,
                                          allow_redirects=False, timeout=timeout) as resp:
                kept = resp.content.read(BODY_KEPT)
                text = (await kept).decode("utf-8", "replace")
                got = {k: v for k, v in resp.headers.items() if k.lower() in KEPT_HEADERS}
                return Attempt(number, started, time.monotonic() - t0, resp.status,
                               response_headers=got, response_body=text), got
        except (aiohttp.ClientError, TimeoutError, ServiceError, OSError, ValueError) as exc:
            return Attempt(number, started, time.monotonic() - t0, None,
                           error=_describe(exc, self._cfg.request_timeout)), {}

    def _count(self, claim: Claim, verdict: Verdict, now: datetime) -> None:
        deliveries = self._metrics.deliveries
        if verdict.state is DeliveryState.DELIVERED:
            deliveries.labels("success").inc()
            accepted = claim.event.accepted_at
            self._metrics.latency.observe(max(0.0, (now - accepted).total_seconds()))
        elif verdict.state is DeliveryState.RETRYING:
            deliveries.labels("retry").inc()
        elif verdict.disable_endpoint:  # ended early: the endpoint is gone or disabled
            deliveries.labels("failed").inc()
        else:  # retries exhausted
            deliveries.labels("dead").inc()
        if verdict.disable_endpoint:
            log.warning("endpoint %s disabled: %s", claim.endpoint.id, verdict.disable_endpoint)


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(exc, UnsafeTarget):  # aiohttp lets the guard's refusal through as is
        return str(exc)
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
