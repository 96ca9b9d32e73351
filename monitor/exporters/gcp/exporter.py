"""Google Cloud Monitoring export: every `[gcp].interval` the per-target series of our own
registry are written as `custom.googleapis.com/crypitor/<metric name>` with CreateTimeSeries.

It runs in its own task and only reads the registry, so a slow or failing API costs the
probes nothing. The choices the API forces on us on what is written (metrics, resource,
labels) are listed in `monitor.exporters.gcp.series`; those on how it is written, here:

* **Rate**: at most 200 series per call, each series once per call. The API takes one point
  per series every 5 s (older documentation: 10 s); the interval floor is 10 s, and a cycle
  whose clock reads less than 5 s after the previous one (a clock stepped back) is skipped.
* **Errors**: UNAVAILABLE and DEADLINE_EXCEEDED (what the library itself retries on this
  service) are retried with backoff while the cycle's budget lasts; anything else is not,
  as the next cycle sends fresh points anyway. A failure is logged once per kind (gRPC
  status name or exception class) until a cycle where every call succeeds. A rejected batch
  does not stop the others; a transient failure outlasting its retries ends the cycle. A
  cycle still running when the next is due makes that one skip, so cycles never pile up.
* **Credentials**: with `insecure` and an `api_endpoint`, plain gRPC to that address with
  anonymous credentials (tests, emulators); otherwise Application Default Credentials, looked
  up in a worker thread (it may query the metadata server). Missing credentials disable the
  exporter with one error line; they never stop `crypitor run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import grpc
from google.api_core.client_options import ClientOptions
from google.auth import default as default_credentials
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service.transports import (
    MetricServiceGrpcAsyncIOTransport,
)
from prometheus_client import CollectorRegistry

from core.clock import Clock, utc_now
from core.supervisor import Spawn, Supervisor
from monitor.exporters.gcp.errors import TRANSIENT, FailureLog, describe, error_kind
from monitor.exporters.gcp.series import EXPORTED, batches, to_time_series
from probes.base import is_env_ref

log = logging.getLogger("crypitor.gcp")

MIN_INTERVAL = 10.0  # seconds between cycles, at least
MIN_POINT_SPACING = 5.0  # the API's minimum between two points of one series
CALL_TIMEOUT = 12.0  # the library's own default for CreateTimeSeries
BACKOFF = (1.0, 2.0, 4.0)  # waits before the retries of a transient failure
CYCLE_BUDGET = 0.8  # share of the interval a cycle may spend, retries included


class GcpSettings(Protocol):
    """What the exporter reads from `[gcp]` (`monitor.config.GcpSection`, env: resolved)."""

    @property
    def project_id(self) -> str: ...
    @property
    def interval(self) -> float: ...
    @property
    def api_endpoint(self) -> str: ...
    @property
    def insecure(self) -> bool: ...


# ---- the exporter ------------------------------------------------------------------------

class _Unusable(Exception):
    """The settings or credentials leave nothing to export with."""


class _Sent(enum.Enum):
    OK = "ok"
    REJECTED = "rejected"  # this batch failed; the others may still go
    GAVE_UP = "gave_up"  # transient failure past its retries: end the cycle


@dataclass
class ExportStats:
    cycles: int = 0  # cycles that collected and tried to send
    skipped: int = 0  # ticks skipped: previous cycle still running, or clock too close
    calls: int = 0  # CreateTimeSeries attempts, retries included
    failed_calls: int = 0
    series_sent: int = 0  # series in calls that succeeded


class GcpExporter:
    """Writes the registry's per-target series to Cloud Monitoring every interval.

    `await start()` starts its task, which connects (or logs why it cannot and stays
    disabled) and then ticks; `await stop()` ends it. `export_once()` is one cycle, `tick()`
    starts one unless the previous is still running. None of them raises.
    """

    def __init__(self, settings: GcpSettings, registry: CollectorRegistry, *,
                 node_id: str | None = None, now: Clock = utc_now,
                 backoff: Sequence[float] = BACKOFF, call_timeout: float = CALL_TIMEOUT,
                 names: Collection[str] = EXPORTED, spawn: Spawn | None = None) -> None:
        self.settings = settings
        self.interval = max(float(settings.interval), MIN_INTERVAL)
        self.project_id = settings.project_id
        self.node_id = node_id or socket.gethostname()
        self.stats = ExportStats()
        self.enabled = False
        self._registry = registry
        self._now = now
        self._backoff = tuple(backoff)
        self._call_timeout = call_timeout
        self._names = names
        self._start = self._now()
        self._last_end: datetime | None = None
        self._client: monitoring_v3.MetricServiceAsyncClient | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._cycle: asyncio.Task[bool] | None = None
        self._failures = FailureLog()
        self._settled = asyncio.Event()
        self._spawn = spawn or Supervisor().supervise

    # ---- lifecycle ----

    async def start(self) -> None:
        """Start the export task. It connects first, without holding up the caller: the
        credentials lookup may wait on the metadata server. The task runs under `spawn`
        (the monitor's supervisor): a crash is logged, counted and the task restarted."""
        self._ticker = self._spawn("gcp-export", self._run)

    async def ready(self) -> bool:
        """Wait until the task has connected or given up; whether it exports."""
        await self._settled.wait()
        return self.enabled

    async def stop(self) -> None:
        for task in (self._ticker, self._cycle):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._ticker = self._cycle = None
        self.enabled = False
        if self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):
                await client.transport.close()  # type: ignore[no-untyped-call]

    async def _connect(self) -> monitoring_v3.MetricServiceAsyncClient:
        s = self.settings
        if is_env_ref(self.project_id):
            raise _Unusable("gcp.project_id is an unresolved env: reference")
        if s.insecure:
            if not s.api_endpoint:
                raise _Unusable("gcp.insecure needs gcp.api_endpoint")
            if not self.project_id:
                raise _Unusable("gcp.project_id is empty")
            channel = grpc.aio.insecure_channel(s.api_endpoint)
            transport = MetricServiceGrpcAsyncIOTransport(
                host=s.api_endpoint, channel=channel,
                credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
            return monitoring_v3.MetricServiceAsyncClient(transport=transport)
        credentials, adc_project = await asyncio.to_thread(
            default_credentials, scopes=MetricServiceGrpcAsyncIOTransport.AUTH_SCOPES)
        if not self.project_id:
            if not adc_project:
                raise _Unusable("gcp.project_id is empty and the credentials name no project")
            self.project_id = adc_project
        options = ClientOptions(api_endpoint=s.api_endpoint) if s.api_endpoint else None
        return monitoring_v3.MetricServiceAsyncClient(credentials=credentials,
                                                      client_options=options)

    async def _run(self) -> None:
        if self._client is None:  # restarted after a crash: connected already
            try:
                self._client = await self._connect()
            except Exception as exc:  # no ADC, a bad endpoint: export off, monitoring on
                why = describe(exc)
                if isinstance(exc, DefaultCredentialsError):
                    why = ("no Application Default Credentials (set "
                           "GOOGLE_APPLICATION_CREDENTIALS or run where the metadata server "
                           f"provides them): {why}")
                log.error("Google Cloud Monitoring export disabled: %s", why)
                return
            finally:
                self.enabled = self._client is not None
                self._settled.set()
            log.info("exporting to Google Cloud Monitoring project %s every %gs",
                     self.project_id, self.interval)
        loop = asyncio.get_running_loop()
        due = loop.time() + self.interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due += self.interval
            if due < loop.time():  # a suspended machine: no burst of catch-up cycles
                due = loop.time() + self.interval
            self.tick()

    def tick(self) -> bool:
        """Start a cycle in its own task unless the previous one is still running."""
        if not self.enabled:
            return False
        if self._cycle is not None and self._cycle.done() and not self._cycle.cancelled():
            ended, self._cycle = self._cycle, None
            ended.result()  # a cycle that crashed (our bug) crashes the ticker: counted
        if self._cycle is not None and not self._cycle.done():
            self.stats.skipped += 1
            self._failures.report("CYCLE_SKIPPED", "the previous export is still running; "
                                  "skipping cycles until it ends", logging.WARNING)
            return False
        self._cycle = asyncio.create_task(self.export_once(), name="gcp-export-cycle")
        return True

    # ---- one cycle ----

    async def export_once(self) -> bool:
        """Collect, convert and send; True when every call succeeded (or nothing to send)."""
        if self._client is None:
            return False
        loop = asyncio.get_running_loop()
        now = self._now()
        if self._last_end is not None and \
                (now - self._last_end).total_seconds() < MIN_POINT_SPACING:
            self.stats.skipped += 1
            log.debug("gcp export: %s since the last points; skipping", now - self._last_end)
            return False
        try:
            families = list(self._registry.collect())
            # conversion builds thousands of messages: off the event loop
            series = await asyncio.to_thread(
                to_time_series, families, self.project_id, now, start=self._start,
                node_id=self.node_id, names=self._names)
        except Exception as exc:  # a collector bug must not end the exporter
            self._failures.report(type(exc).__name__, f"cannot collect: {exc}", logging.ERROR)
            return False
        self._last_end = now
        self.stats.cycles += 1
        deadline = loop.time() + self.interval * CYCLE_BUDGET
        ok = True
        for batch in batches(series):
            sent = await self._send(batch, deadline)
            if sent is _Sent.OK:
                continue
            ok = False
            if sent is _Sent.GAVE_UP:
                break
        if ok:
            self._failures.recovered()
        return ok

    async def _send(self, batch: Sequence[monitoring_v3.TimeSeries], deadline: float) -> _Sent:
        assert self._client is not None
        loop = asyncio.get_running_loop()
        request = monitoring_v3.CreateTimeSeriesRequest(name=f"projects/{self.project_id}",
                                                        time_series=list(batch))
        attempt = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                self._failures.report(
                    "CYCLE_BUDGET", f"a cycle ran out of time ({self.interval:g}s interval); "
                    "its remaining series were dropped", logging.WARNING)
                return _Sent.GAVE_UP
            self.stats.calls += 1
            try:
                await self._client.create_time_series(
                    request=request, retry=None, timeout=min(self._call_timeout, remaining))
            except Exception as exc:
                self.stats.failed_calls += 1
                kind = error_kind(exc)
                transient = kind in TRANSIENT
                if transient and attempt < len(self._backoff):
                    wait = self._backoff[attempt]
                    if loop.time() + wait < deadline:
                        attempt += 1
                        await asyncio.sleep(wait)
                        continue
                self._failures.call_failed(kind, exc, self.project_id)
                return _Sent.GAVE_UP if transient else _Sent.REJECTED
            self.stats.series_sent += len(batch)
            return _Sent.OK
