"""The measurements of `bench.service`, one function per scenario. Each starts what it
measures (a fresh `crypitor service` every time, so one scenario's backlog never slows the
next), counts over a bounded window, and stops everything before returning."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.procs import cpu_seconds, scrape, tree_cpu
from bench.service_load import BATCH, batch_body, event_body, load, load_timed, paced, typed_batches
from bench.service_procs import (
    AUTH,
    Proc,
    WrkResult,
    add_endpoint,
    client_loop,
    counters,
    machine_busy,
    peer,
    redis_server,
    service,
    wait_delivered,
    wrk,
)

WARMUP = 2.0
DRAIN_LIMIT = 120.0  # seconds a backlog may take to drain before the run gives up on it
LATENCY = "crypitor_webhook_delivery_latency_seconds"
UNMATCHED = "bench.nobody-wants-this"


@dataclass(frozen=True)
class Measure:
    rate: float  # per second, in `unit`
    unit: str
    count: int
    seconds: float
    cpu: float | None = None  # CPU-seconds of the measured process(es) in the window
    errors: int = 0
    side: int = 0  # deliveries the service made during an ingest window
    busy: float | None = None  # cores the whole machine kept busy in the window

    @property
    def cpu_ms(self) -> float | None:
        return None if self.cpu is None or not self.count else self.cpu / self.count * 1000

    @property
    def cores(self) -> float | None:
        return None if self.cpu is None or not self.seconds else self.cpu / self.seconds


def _wrk_cpu(cpu: Callable[[], float], url: str, body: bytes, connections: int,
             seconds: float) -> tuple[WrkResult, float]:
    wrk(url, body, connections, WARMUP)
    cpu0 = cpu()
    result = wrk(url, body, connections, seconds)
    return result, cpu() - cpu0


def _req(result: WrkResult, cpu: float | None, per_request: int = 1, side: int = 0) -> Measure:
    return Measure(result.rate * per_request, "req/s" if per_request == 1 else "events/s",
                   result.requests * per_request, result.seconds, cpu, result.errors, side)


# How the service's one endpoint takes what is ingested:
#   "rows":    it wants every event, so each one writes its delivery row (the whole ingest
#              path), but its rate limit (1/s) keeps the dispatcher idle: ingest measured alone
#   "deliver": it wants every event and nothing holds delivery back: the sustained rate of
#              ingesting and delivering on the same cores
#   "none":    it wants another event type: events stored, no delivery rows
FAN_OUT = ("rows", "deliver", "none")


def _service_ingest(path: str, body: bytes, per_request: int, sink_url: str,
                    connections: int, seconds: float, fan_out: str) -> Measure:
    with service() as svc:
        add_endpoint(svc.port, sink_url, [UNMATCHED] if fan_out == "none" else None,
                     1.0 if fan_out == "rows" else None)
        url = f"{svc.base}{path}"
        wrk(url, body, connections, WARMUP)
        _, delivered0 = counters([svc.port])
        cpu0 = cpu_seconds(svc.pid)
        result = wrk(url, body, connections, seconds)
        cpu = cpu_seconds(svc.pid) - cpu0
        _, delivered1 = counters([svc.port])
    return _req(result, cpu, per_request, int(delivered1 - delivered0))


def single_ingest(nginx_port: int, nginx_pid: int, sink_url: str, connections: int,
                  seconds: float) -> dict[str, Measure]:
    """POST /v1/events-shaped requests: bare aiohttp, nginx, and the service in each
    `FAN_OUT` mode."""
    body = event_body()
    out: dict[str, Measure] = {}
    with peer("hello") as hello:
        result, cpu = _wrk_cpu(lambda: cpu_seconds(hello.pid), f"{hello.base}/v1/events",
                               body, connections, seconds)
        out["aiohttp"] = _req(result, cpu)
    result, cpu = _wrk_cpu(lambda: tree_cpu(nginx_pid),
                           f"http://127.0.0.1:{nginx_port}/v1/events", body, connections,
                           seconds)
    out["nginx"] = _req(result, cpu)
    for mode in FAN_OUT:
        out[mode] = _service_ingest("/v1/events", body, 1, sink_url, connections, seconds,
                                    mode)
    return out


def batch_ingest(sink_url: str, connections: int, seconds: float,
                 size: int = BATCH) -> dict[str, Measure]:
    """POST /v1/events/batch with `size` events each, in each `FAN_OUT` mode."""
    return {mode: _service_ingest("/v1/events/batch", batch_body(size), size, sink_url,
                                  connections, seconds, mode)
            for mode in FAN_OUT}


def _drain(procs: list[Proc]) -> Measure:
    """Deliveries per second from now until every event received is delivered."""
    ports = [p.port for p in procs]
    t0 = time.monotonic()
    received, delivered0 = counters(ports)
    cpu0, busy0 = sum(cpu_seconds(p.pid) for p in procs), machine_busy()
    t1, delivered1 = wait_delivered(ports, received, DRAIN_LIMIT)
    cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
    busy = (machine_busy() - busy0) / (t1 - t0)
    done = int(delivered1 - delivered0)
    return Measure(done / (t1 - t0), "deliveries/s", done, t1 - t0, cpu,
                   errors=int(received - delivered1), busy=busy)


def delivery(sink_url: str, count: int, concurrency: int) -> dict[str, Measure]:
    """`count` events pre-loaded, then the drain: the service's dispatcher against the bare
    client loop posting as many bodies with the same concurrency to the same sink."""
    with service(max_in_flight=concurrency) as svc:
        add_endpoint(svc.port, sink_url)
        load([svc.port], count)
        ours = _drain([svc])
    bare = client_loop(sink_url, count, concurrency, DRAIN_LIMIT)
    return {"crypitor": ours,
            "aiohttp": Measure(bare["ok"] / bare["seconds"], "deliveries/s", int(bare["ok"]),
                               bare["seconds"], bare["cpu"], int(bare["failed"]))}


def _add_endpoints(port: int, urls: list[str], types: list[list[str] | None]) -> None:
    """Register endpoints 32 at a time (one by one, 5,000 durable writes take a while)."""
    async def run() -> None:
        async with aiohttp.ClientSession(headers=AUTH) as http:
            pending = list(zip(urls, types, strict=True))

            async def worker() -> None:
                while pending:
                    url, wanted = pending.pop()
                    body: dict[str, Any] = {"url": url}
                    if wanted is not None:
                        body["event_types"] = wanted
                    async with http.post(f"http://127.0.0.1:{port}/v1/endpoints",
                                         json=body) as resp:
                        if resp.status != 201:
                            raise RuntimeError(f"endpoint answered {resp.status}")

            await asyncio.gather(*(worker() for _ in range(32)))
    asyncio.run(run())


def spread(sink_url: str, endpoints: int, total: int, types: int, concurrency: int,
           queue: str = "sqlite") -> Measure:
    """`total` events of `types` types (`bench.<n % types>`) posted in 1000-event batches to
    a service with `endpoints` endpoints (endpoint i wants `bench.i`; a single endpoint wants
    every type) while it delivers: deliveries per second from the first accepted batch to
    the last delivery. Compare runs with the same `total` and `types`: same bodies."""
    with contextlib.ExitStack() as stack:
        if queue == "redis":
            redis = stack.enter_context(redis_server())
            queue = f"redis://127.0.0.1:{redis.port}/0"
        svc = stack.enter_context(service(queue, concurrency))
        if endpoints == 1:
            _add_endpoints(svc.port, [sink_url], [None])
        else:
            _add_endpoints(svc.port, [f"{sink_url}/{i}" for i in range(endpoints)],
                           [[f"bench.{i}"] for i in range(endpoints)])
        bodies = typed_batches(total, types)
        cpu0, busy0 = cpu_seconds(svc.pid), machine_busy()
        accepted, first = load_timed(svc.port, bodies)
        t1, delivered = wait_delivered([svc.port], accepted, DRAIN_LIMIT * 3)
        cpu = cpu_seconds(svc.pid) - cpu0
        took = t1 - first
        busy = (machine_busy() - busy0) / took
    return Measure(delivered / took, "deliveries/s", int(delivered), took, cpu,
                   errors=int(accepted - delivered), busy=busy)


@dataclass(frozen=True)
class Latency:
    sent: int
    failed: int
    delivered: int
    p50: float  # seconds, measured at the sink from the payload's acceptance timestamp
    p99: float
    worst: float
    hist_p50: float  # upper bound of the service histogram's bucket holding the quantile
    hist_p99: float


def _bucket_bound(before: str, after: str, q: float) -> float:
    def buckets(text: str) -> dict[float, float]:
        out: dict[float, float] = {}
        for line in text.splitlines():
            if line.startswith(f"{LATENCY}_bucket"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                out[float(le)] = float(line.rsplit(" ", 1)[1])
        return out

    b0, b1 = buckets(before), buckets(after)
    delta = {le: n - b0.get(le, 0.0) for le, n in sorted(b1.items())}
    total = delta.get(float("inf"), 0.0)
    return next((le for le, n in delta.items() if total and n >= q * total), float("nan"))


def latency(rate: float, seconds: float) -> Latency:
    """Single events at a steady `rate` to a sink that notes when each delivery arrives."""
    with peer("sink") as sink, service() as svc:
        add_endpoint(svc.port, f"{sink.base}/hook")
        before = scrape(svc.port)
        ok, failed = paced(svc.port, rate, seconds)
        received, _ = counters([svc.port])
        _, delivered = wait_delivered([svc.port], received, 30)
        after = scrape(svc.port)
        with urllib.request.urlopen(f"{sink.base}/stats", timeout=30) as resp:
            stats = json.loads(resp.read())
    return Latency(ok, failed, int(delivered), stats["p50"], stats["p99"], stats["max"],
                   _bucket_bound(before, after, 0.5), _bucket_bound(before, after, 0.99))


@dataclass(frozen=True)
class Scale:
    processes: int
    ingest: Measure  # the counted pre-load, batches spread over the processes
    drain: Measure
    redis_cpu: float  # redis-server CPU-seconds over load and drain


def redis_scale(processes: int, sink_url: str, count: int, concurrency: int) -> Scale:
    """`processes` services sharing one Redis queue: load `count` events through all of
    them, then drain; throughput summed over the processes."""
    with redis_server() as redis, contextlib.ExitStack() as stack:
        queue = f"redis://127.0.0.1:{redis.port}/0"
        procs = [stack.enter_context(service(queue, concurrency)) for _ in range(processes)]
        try:
            add_endpoint(procs[0].port, sink_url)
            redis0 = cpu_seconds(redis.pid)
            cpu0 = sum(cpu_seconds(p.pid) for p in procs)
            events, took = load([p.port for p in procs], count)
            cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
            drain = _drain(procs)
        except Exception as exc:
            logs = "\n".join(f"--- service on port {p.port} (last lines):\n{p.log_tail()}"
                             for p in procs)
            raise RuntimeError(f"{type(exc).__name__}: {exc}\n{logs}") from exc
        redis_cpu = cpu_seconds(redis.pid) - redis0
    return Scale(processes, Measure(events / took, "events/s", events, took, cpu), drain,
                 redis_cpu)
