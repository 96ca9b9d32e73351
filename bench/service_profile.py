"""Where a delivery's time goes: `crypitor service` (the `Service` itself, SQLite or Redis) in
this process under cProfile, draining a pre-loaded backlog to an nginx sink. Prints CPU per
delivery (the whole process, writer thread included) and the profile's split by part:
claim, fan-out rows, payload and signing, HTTP, state, attempt records and metrics.

cProfile sees the event loop's thread only; SQLite's commits run on the writer thread and
show in the process CPU, not in the split.

    .venv/bin/python -m bench.service_profile [--events 20000] [--endpoints 1]
        [--redis] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from bench.procs import cpu_seconds, nginx_server
from bench.service_procs import redis_server
from bench.webhook_peers import EVENT
from core import signing
from service.app import Service
from service.models import Endpoint, NewEvent

# (part, substrings of "file:function" whose cumulative time the part is)
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("claim (the store's claim, SQL or script)", ("queue.py:claim", "store.py:claim")),
    ("  of which fan-out rows (materialise)", ("events.py:materialise",)),
    ("payload", ("dispatcher.py:payload",)),
    ("signing", ("app.py:_sign",)),
    ("HTTP (client: connect, send, parse)", ("wire.py:post",)),
    ("state (decide)", ("state.py:decide",)),
    ("attempt records (settle, SQL or script)", ("queue.py:settle", "store.py:settle_many")),
    ("metrics (observe_delivery)", ("metrics.py:observe_delivery",)),
    ("the whole attempt (dispatcher._attempt)", ("dispatcher.py:_attempt",)),
    ("a lane's worker loop (dispatcher._work)", ("dispatcher.py:_work",)),
)


@dataclass(frozen=True)
class Settings:
    """`service.settings.ServiceSettings` for an in-process bench service."""

    listen: str
    queue: str = "sqlite"
    api_keys: Sequence[str] = ("bench-key",)
    allow_private_targets: bool = True
    allowed_networks: Sequence[str] = ()
    retry_schedule: Sequence[float] = (5.0, 30.0)
    request_timeout: float = 15.0
    max_in_flight_per_endpoint: int = 64
    disable_after: float = 86_400.0
    shutdown_drain: float = 0.0
    shutdown_timeout: float = 5.0
    chains: Mapping[str, Any] = field(default_factory=dict)


def _delivered(svc: Service) -> float:
    return float(svc.metrics.deliveries.labels("success")._value.get())


async def preload(svc: Service, sink: str, events: int, endpoints: int) -> None:
    """`endpoints` endpoints on `sink`, endpoint i wanting type `bench.i`, and `events`
    events spread evenly over the types, accepted in batches of 1000."""
    now = datetime.now(UTC)
    for i in range(endpoints):
        types = () if endpoints == 1 else (f"bench.{i}",)
        await svc.store.put_endpoint(Endpoint(f"ep_{i:08d}", f"{sink}/{i}", signing.new_secret(),
                                              types, created_at=now))
    data = EVENT["data"]
    kinds = [str(EVENT["type"])] if endpoints == 1 else [f"bench.{i}" for i in range(endpoints)]
    batch = [NewEvent(kinds[n % len(kinds)], data) for n in range(events)]
    for start in range(0, events, 1000):
        await svc.store.accept(batch[start:start + 1000], now)


async def drain(svc: Service, events: int, seconds: float) -> float:
    await svc.start()
    t0 = time.monotonic()
    deadline = t0 + seconds
    while _delivered(svc) < events and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    took = time.monotonic() - t0
    await svc.stop()
    return took


@contextlib.contextmanager
def queue_url(redis: bool) -> Iterator[str]:
    if not redis:
        yield "sqlite"
        return
    with redis_server() as server:
        yield f"redis://127.0.0.1:{server.port}/0"


def split(stats: pstats.Stats, count: int,
          parts: tuple[tuple[str, tuple[str, ...]], ...] = PARTS, width: int = 40) -> list[str]:
    """One line per part: the largest cumulative time among its functions, per `count`."""
    raw: Any = stats.stats  # type: ignore[attr-defined]
    lines = []
    for part, needles in parts:
        cumulative = 0.0
        for (path, _line, name), (_cc, _nc, _tt, ct, _callers) in raw.items():
            if f"{os.path.basename(path)}:{name}" in needles:
                cumulative = max(cumulative, ct)
        lines.append(f"  {part:{width}}{cumulative / count * 1e6:{width // 5}.1f} µs")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--endpoints", type=int, default=1)
    ap.add_argument("--redis", action="store_true")
    ap.add_argument("--no-profile", action="store_true", help="CPU figures only")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    from tests.support.net import free_port

    with nginx_server(ports=1, keepalive=True) as (ports, _), queue_url(args.redis) as queue, \
            tempfile.TemporaryDirectory(prefix="bench-prof-") as tmp:
        svc = Service(Settings(f"127.0.0.1:{free_port()}", queue), Path(tmp))
        sink = f"http://127.0.0.1:{ports[0]}/hook"

        async def load() -> None:
            await svc.store.open()
            await preload(svc, sink, args.events, args.endpoints)
            await svc.store.close()

        uvloop.run(load())
        svc = Service(Settings(f"127.0.0.1:{free_port()}", queue), Path(tmp))
        profiler = cProfile.Profile()
        cpu0 = cpu_seconds(os.getpid())
        if not args.no_profile:
            profiler.enable()
        took = uvloop.run(drain(svc, args.events, 300))
        profiler.disable()
        cpu = cpu_seconds(os.getpid()) - cpu0
        done = _delivered(svc)
    print(f"{done:,.0f} deliveries in {took:.2f} s: {done / took:,.0f}/s, "
          f"{cpu / max(done, 1) * 1e6:.1f} µs CPU each ({'redis' if args.redis else 'sqlite'}, "
          f"{args.endpoints} endpoint(s){'' if args.no_profile else ', under cProfile'})")
    if args.no_profile:
        return
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    print("Split (cumulative, event-loop thread):")
    print("\n".join(split(stats, max(int(done), 1))))
    stats.sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
