"""Where an ingest request's time goes: the `Service` (SQLite) in this process under cProfile
while `wrk` (another process) posts single events or batches at it, with one endpoint wanting
every event (rate-limited to 1/s, so each accept writes its fan-out and the dispatcher stays
idle: `bench.service`'s "rows" case). Prints requests/s, CPU per request (the whole process,
writer thread included) and the profile's split by part: aiohttp's server, authentication,
parsing and validation, the store's accept (SQL), the group commit, the answer.

cProfile sees the event loop's thread only; the SQLite commit runs on the writer thread and
shows in the process CPU, not in the split. cProfile itself slows the loop 2-3x: compare the
split's parts with each other, and `--no-profile` runs for CPU per request.

    .venv/bin/python -m bench.service_ingest_profile [--batch 0|100|1000] [--seconds 10]
        [--connections 64] [--no-profile] [--top 25]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import tempfile
import threading
from pathlib import Path

import uvloop

from bench.procs import cpu_seconds
from bench.service_load import batch_body, event_body
from bench.service_procs import WrkResult, wrk
from bench.service_profile import Settings, split
from core import signing
from service.app import Service
from service.models import Endpoint

# (part, "file:function" names whose cumulative time the part is; the largest one counts)
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("the whole request (aiohttp's _handle_request)", ("web_protocol.py:_handle_request",)),
    ("  our front and handler (the guard)", ("server.py:_guard",)),
    ("    authentication (_refuse)", ("server.py:_refuse",)),
    ("    parsing and validation", ("parsing.py:event", "parsing.py:batch")),
    ("    the store's accept (await, incl. commit wait)", ("store.py:accept",)),
    ("      SQL on the loop (events.accept)", ("events.py:accept",)),
    ("      the group commit's statements (_apply)", ("file.py:_apply",)),
    ("    the answer (json_response)", ("base.py:json_response",)),
    ("  writing the answer (aiohttp's finish_response)", ("web_protocol.py:finish_response",)),
    ("aiohttp's parser and protocol (data_received)", ("web_protocol.py:data_received",)),
    ("the dispatcher's claims (woken by each accept)", ("dispatcher.py:run",)),
)


async def serve(svc: Service, sink: str, ready: threading.Event, done: threading.Event,
                loops: list[asyncio.AbstractEventLoop]) -> None:
    loops.append(asyncio.get_running_loop())
    await svc.start()
    await svc.store.put_endpoint(Endpoint("ep_bench", sink, signing.new_secret(), (),
                                          rate_limit=1.0, created_at=svc.clock()))
    ready.set()
    while not done.is_set():
        await asyncio.sleep(0.05)
    await svc.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=0, help="events per request; 0: single")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=0,
                    help="wrk connections (default: 64 single, 4 batch, as bench.service)")
    ap.add_argument("--no-profile", action="store_true", help="CPU figures only")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    from tests.support.net import free_port

    connections = args.connections or (4 if args.batch else 64)
    path, body = (("/v1/events/batch", batch_body(args.batch)) if args.batch
                  else ("/v1/events", event_body()))
    per = args.batch or 1
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        svc = Service(Settings(f"127.0.0.1:{port}", api_keys=("bench-key",)), Path(tmp))
        ready, done = threading.Event(), threading.Event()
        loops: list[asyncio.AbstractEventLoop] = []
        # nothing listens there: the 1/s rate limit keeps the dispatcher from trying
        loop = threading.Thread(target=uvloop.run,
                                args=(serve(svc, f"http://127.0.0.1:{free_port()}/hook", ready,
                                            done, loops),))
        profiler = cProfile.Profile()
        loop.start()
        try:
            if not ready.wait(60):
                raise RuntimeError("the service did not start")
            url = f"http://127.0.0.1:{port}{path}"
            wrk(url, body, connections, 2.0)  # warm-up
            cpu0 = cpu_seconds(os.getpid())
            if not args.no_profile:
                # cProfile hooks the thread that enables it: the loop's
                enabled = threading.Event()

                def enable() -> None:
                    profiler.enable()
                    enabled.set()
                loops[0].call_soon_threadsafe(enable)
                enabled.wait(10)
            result: WrkResult = wrk(url, body, connections, args.seconds)
            if not args.no_profile:
                disabled = threading.Event()

                def disable() -> None:
                    profiler.disable()
                    disabled.set()
                loops[0].call_soon_threadsafe(disable)
                disabled.wait(10)
            cpu = cpu_seconds(os.getpid()) - cpu0
            commits = svc.store.commits if hasattr(svc.store, "commits") else 0
        finally:
            done.set()
            loop.join(60)
    count = max(result.requests, 1)
    print(f"{result.rate:,.0f} req/s ({result.rate * per:,.0f} events/s), {result.errors} "
          f"errors, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms; "
          f"{cpu / count * 1e6:.1f} µs CPU per request ({cpu / count / per * 1e6:.2f} per "
          f"event), {commits:,} commits (warm-up included)"
          f"{'' if args.no_profile else ', under cProfile'}")
    if args.no_profile:
        return
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    print("Split (cumulative per request, event-loop thread):")
    print("\n".join(split(stats, count, PARTS, width=52)))
    stats.sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
