"""A fake Cloud Monitoring MetricService on a real local gRPC server: CreateTimeSeries only.

Requests are decoded with the client library's own request type. The fake checks what the
published API documents for writes and answers INVALID_ARGUMENT otherwise: a name
`projects/<id>`, 1 to 200 series, each series once per request with exactly one point,
`custom.googleapis.com/` types, label keys `[a-z][a-z0-9_]*` of at most 100 characters and
values of at most 1024, GAUGE points at one instant, CUMULATIVE points with a start before
the end, and points of one series at least 5 s apart and in order. (The real API writes the
valid series of a partly invalid request; the fake refuses the whole request.)

Scripting, for the next calls in order:

    fake.fail(grpc.StatusCode.UNAVAILABLE, times=3)
    fake.delay = 2.0            # seconds before every answer (client deadlines)
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import grpc
import pytest_asyncio
from google.cloud import monitoring_v3
from google.protobuf import empty_pb2

SERVICE = "google.monitoring.v3.MetricService"
MAX_SERIES = 200
MIN_SPACING = 5.0
_NAME = re.compile(r"projects/[^/]+")
_KEY = re.compile(r"[a-z][a-z0-9_]{0,99}")
GAUGE, CUMULATIVE = 1, 3  # google.api.MetricDescriptor.MetricKind

SeriesKey = tuple[str, tuple[tuple[str, str], ...], str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Forced:
    code: grpc.StatusCode
    message: str


def series_key(ts: monitoring_v3.TimeSeries) -> SeriesKey:
    return (ts.metric.type, tuple(sorted(ts.metric.labels.items())), ts.resource.type,
            tuple(sorted(ts.resource.labels.items())))


class FakeGcp:
    """The fake's state; `serve_fake_gcp()` puts it behind a server and sets `address`."""

    def __init__(self) -> None:
        self.address = ""  # what the exporter takes as api_endpoint: 127.0.0.1:PORT
        self.requests: list[monitoring_v3.CreateTimeSeriesRequest] = []  # accepted
        self.rejected: list[tuple[grpc.StatusCode, str]] = []  # every refused call
        self.calls = 0
        self.delay = 0.0
        self.forced: list[Forced] = []
        self.last_end: dict[SeriesKey, datetime] = {}
        self.in_flight = 0

    def fail(self, code: grpc.StatusCode, times: int = 1, message: str = "") -> None:
        self.forced.extend([Forced(code, message or f"scripted {code.name}")] * times)

    @property
    def series(self) -> list[monitoring_v3.TimeSeries]:
        return [ts for r in self.requests for ts in r.time_series]

    def problems(self, request: monitoring_v3.CreateTimeSeriesRequest) -> list[str]:
        out: list[str] = []
        if not _NAME.fullmatch(request.name):
            out.append(f"name {request.name!r} is not projects/<id>")
        if not 0 < len(request.time_series) <= MAX_SERIES:
            out.append(f"{len(request.time_series)} time series (1..{MAX_SERIES} allowed)")
        seen: set[SeriesKey] = set()
        for i, ts in enumerate(request.time_series):
            where = f"timeSeries[{i}]"
            key = series_key(ts)
            if key in seen:
                out.append(f"{where}: Duplicate TimeSeries encountered")
            seen.add(key)
            if not ts.metric.type.startswith("custom.googleapis.com/"):
                out.append(f"{where}: metric type {ts.metric.type!r}")
            for k, v in ts.metric.labels.items():
                if not _KEY.fullmatch(k):
                    out.append(f"{where}: label key {k!r}")
                if len(v) > 1024:
                    out.append(f"{where}: label {k} value longer than 1024")
            if len(ts.points) != 1:
                out.append(f"{where}: {len(ts.points)} points (exactly one allowed)")
                continue
            interval = ts.points[0].interval
            start = interval.start_time if "start_time" in interval else None
            end = interval.end_time
            if ts.metric_kind == GAUGE and start is not None and start != end:
                out.append(f"{where}: a GAUGE point's start must equal its end")
            if ts.metric_kind == CUMULATIVE and (start is None or start >= end):
                out.append(f"{where}: a CUMULATIVE point needs a start before its end")
            last = self.last_end.get(key)
            if last is not None and (end - last).total_seconds() < MIN_SPACING:
                out.append(f"{where}: One or more points were written more frequently than "
                           "the maximum sampling period configured for the metric")
        return out

    async def create_time_series(self, request: monitoring_v3.CreateTimeSeriesRequest,
                                 context: grpc.aio.ServicerContext[object, object],
                                 ) -> empty_pb2.Empty:
        self.calls += 1
        self.in_flight += 1
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.forced:
                forced = self.forced.pop(0)
                self.rejected.append((forced.code, forced.message))
                await context.abort(forced.code, forced.message)
            problems = self.problems(request)
            if problems:
                message = "; ".join(problems)
                self.rejected.append((grpc.StatusCode.INVALID_ARGUMENT, message))
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, message)
            for ts in request.time_series:
                self.last_end[series_key(ts)] = ts.points[0].interval.end_time
            self.requests.append(request)
            return empty_pb2.Empty()
        finally:
            self.in_flight -= 1


async def start_fake_gcp() -> tuple[FakeGcp, grpc.aio.Server]:
    fake = FakeGcp()
    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        fake.create_time_series,
        request_deserializer=monitoring_v3.CreateTimeSeriesRequest.deserialize,
        response_serializer=empty_pb2.Empty.SerializeToString)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(SERVICE, {"CreateTimeSeries": handler})])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    fake.address = f"127.0.0.1:{port}"
    return fake, server


@pytest_asyncio.fixture
async def fake_gcp() -> AsyncIterator[FakeGcp]:
    fake, server = await start_fake_gcp()
    try:
        yield fake
    finally:
        await server.stop(grace=None)
