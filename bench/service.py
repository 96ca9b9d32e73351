"""Webhook service throughput and latency, each figure beside a peer measured in the same run.

On loopback, with `crypitor service` as a real process (a fresh one per scenario):
single-event ingest (wrk) against a bare aiohttp server and nginx; batch ingest in events/s
(100 and 1000 events per request); the dispatcher's drain rate against a bare aiohttp client
loop (one pooled ClientSession, uvloop, `--concurrency` workers: 64) posting the same bodies to
the same nginx sink, on SQLite and on Redis; 100,000 deliveries to one endpoint against the
same to 5,000 endpoints (20 each), timed from the first accepted batch to the last delivery;
acceptance-to-delivery latency at a steady load; one against two processes on one Redis queue.
Ends with what the per-core figures imply for 1M requests/s.

    .venv/bin/python -m bench.service [--seconds 10] [--events 50000] [--no-redis]
        [--spread-endpoints 5000 --spread-events 100000] [--only delivery,spread,...]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field

from bench.procs import nginx_server
from bench.service_runs import (
    Latency,
    Measure,
    Scale,
    batch_ingest,
    delivery,
    latency,
    redis_scale,
    single_ingest,
    spread,
)

MILLION = 1_000_000


def step(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def row(label: str, m: Measure, note: str = "") -> str:
    cpu = f"{m.cpu:8.2f}" if m.cpu is not None else f"{'-':>8}"
    cores = f"{m.cores:7.2f}" if m.cores is not None else f"{'-':>7}"
    per = f"{m.cpu_ms:10.3f}" if m.cpu_ms is not None else f"{'-':>10}"
    return (f"{label:36}{m.rate:>11,.0f} {m.unit:13}{cpu}{cores}{per}{m.errors:>8}"
            f"  {note}").rstrip()


def ratio(label: str, value: float, goal: float | None) -> str:
    if goal is None:
        return f"  {label:44}{value:>7.2f}x"
    verdict = "met" if value >= goal else "NOT met"
    return f"  {label:44}{value:>7.2f}x   goal >= {goal:g}x: {verdict}"


def fleet(single: dict[str, Measure], batch: dict[str, Measure], drain: Measure,
          scale: dict[int, Scale] | None) -> list[str]:
    """Cores for 1M requests/s from the CPU each unit of work cost here: the ingest path
    with its fan-out rows (delivery held back) plus one delivery (the drain)."""
    alone, batched, hello, ngx = (single["rows"], batch["rows"], single["aiohttp"],
                                  single["nginx"])
    if not (drain.cpu and drain.count and alone.cpu_ms and batched.cpu_ms):
        return ["  (not enough measured to estimate)"]
    ingest, per_event, deliver = alone.cpu_ms / 1e3, batched.cpu_ms / 1e3, drain.cpu / drain.count
    both = ingest + deliver
    process = single["deliver"].cores or 1.0
    lines = [
        f"  CPU here: {ingest * 1e3:.3f} ms per single-event request, "
        f"{per_event * 1e3:.4f} ms per event in 1000-event batches, "
        f"{deliver * 1e3:.3f} ms per delivery (one process tops out near {process:.2f} cores).",
        f"  1M single-event requests/s, each delivered once: ~{MILLION * both:,.0f} cores "
        f"(~{MILLION * ingest:,.0f} ingest + ~{MILLION * deliver:,.0f} delivery), i.e. "
        f"~{MILLION * both / process:,.0f} service processes, ~{MILLION * both / 2:,.0f} "
        "machines like this one at 100 % (plan ~2x that for headroom).",
        f"  1M events/s in 1000-event batches: ~{MILLION * (per_event + deliver):,.0f} cores; "
        f"delivery is {deliver / (per_event + deliver):.0%} of it.",
        f"  Peers: nginx ~{MILLION * (ngx.cpu_ms or 0) / 1e3:,.0f} cores and bare aiohttp "
        f"~{MILLION * (hello.cpu_ms or 0) / 1e3:,.0f} cores for 1M requests/s that do nothing.",
    ]
    if scale and 1 in scale and scale[1].drain.count:
        s = scale[1]
        redis = s.redis_cpu / s.drain.count
        lines.append(
            "  A fleet needs the Redis queue (SQLite is one process per file). Redis spent "
            f"{redis * 1e3:.3f} ms CPU per event (accept + deliver, fsync always): 1M events/s "
            f"needs ~{MILLION * redis:,.0f} Redis cores, and Redis runs commands on one "
            "thread, so as many Redis shards (endpoints partitioned across them), or batching.")
    return lines


SCENARIOS = ("ingest", "delivery", "spread", "latency", "redis")


@dataclass
class Results:
    single: dict[str, Measure] | None = None
    batch: dict[int, dict[str, Measure]] = field(default_factory=dict)  # by batch size
    drains: dict[str, Measure] | None = None
    spread: dict[tuple[str, int], Measure] = field(default_factory=dict)  # (queue, endpoints)
    lat: Latency | None = None
    scale: dict[int, Scale] | str = "not run"


def report(args: argparse.Namespace, r: Results) -> None:
    print(f"\nWebhook service on {os.cpu_count()} cores, all on 127.0.0.1 (wrk -t1: "
          f"-c{args.connections} single, -c{args.batch_clients} batch; "
          f"{args.seconds:g}/{args.batch_seconds:g} s per ingest figure; "
          f"{args.events:,} events per drain; {args.concurrency} deliveries in flight)")
    print(f"{'':36}{'rate':>11} {'unit':13}{'CPU s':>8}{'cores':>7}{'ms CPU/u':>10}"
          f"{'errors':>8}")
    if r.single:
        print(row("single ingest: bare aiohttp", r.single["aiohttp"]))
        print(row("single ingest: nginx", r.single["nginx"]))
        runs = [("single ingest", r.single)] + [(f"batch ingest x{n}", b)
                                                for n, b in sorted(r.batch.items())]
        for label, measured in runs:
            print(row(f"{label}: crypitor (sqlite)", measured["rows"],
                      "fan-out rows written, delivery held back"))
            print(row("  same, delivering all meanwhile", measured["deliver"],
                      f"delivered {measured['deliver'].side:,} meanwhile"))
            print(row("  same, no endpoint wants them", measured["none"], "no delivery rows"))
    if r.drains:
        print(row("delivery: bare aiohttp client loop", r.drains["aiohttp"]))
        print(row("delivery: crypitor (sqlite)", r.drains["crypitor"],
                  f"machine busy {r.drains['crypitor'].busy or 0:.2f} of {os.cpu_count()} cores"))
    for (queue, n), m in sorted(r.spread.items()):
        print(row(f"{args.spread_events:,} to {n:,} endpoint(s) ({queue})", m,
                  f"first batch to last delivery, {m.seconds:.1f} s"))
    if isinstance(r.scale, dict):
        for n, sc in r.scale.items():
            print(row(f"batch load: crypitor, redis x{n}", sc.ingest,
                      f"Redis CPU {sc.redis_cpu:.1f} s over load+drain"))
            print(row(f"delivery: crypitor, redis x{n}", sc.drain,
                      f"machine busy {sc.drain.busy or 0:.2f} of {os.cpu_count()} cores"))
    if r.lat:
        lat = r.lat
        print(f"\nLatency, acceptance to delivery, {args.rate:g} events/s for "
              f"{args.latency_seconds:g} s ({lat.sent:,} accepted, {lat.failed} refused, "
              f"{lat.delivered:,} delivered):")
        print(f"  at the sink: p50 {lat.p50 * 1e3:.1f} ms, p99 {lat.p99 * 1e3:.1f} ms, "
              f"max {lat.worst * 1e3:.1f} ms; service histogram: p50 <= {lat.hist_p50:g} s, "
              f"p99 <= {lat.hist_p99:g} s")

    print("\nRatios:")
    if r.single:
        ours, hello = r.single["rows"], r.single["aiohttp"]
        print(ratio("single ingest / bare aiohttp req/s", ours.rate / hello.rate, 0.6))
        print(ratio("  delivering all meanwhile", r.single["deliver"].rate / hello.rate, 0.4))
        print(ratio("  no endpoint wants them (diagnostic)",
                    r.single["none"].rate / hello.rate, None))
        print(ratio("single ingest / nginx req/s", ours.rate / r.single["nginx"].rate, None))
        for n, b in sorted(r.batch.items()):
            print(ratio(f"batch ingest x{n} events/s / bare aiohttp req/s",
                        b["rows"].rate / hello.rate, 10 if n == 100 else None))
            print(ratio("  delivering all meanwhile (diagnostic)",
                        b["deliver"].rate / hello.rate, None))
            print(ratio("  no endpoint wants them (diagnostic)", b["none"].rate / hello.rate,
                        None))
    bare = r.drains["aiohttp"].rate if r.drains else None
    if r.drains and bare:
        print(ratio("delivery (sqlite) / bare client loop", r.drains["crypitor"].rate / bare,
                    1.0))
    if isinstance(r.scale, dict) and r.scale.get(1) and r.scale[1].drain.rate:
        if bare:
            print(ratio("delivery (redis) / bare client loop", r.scale[1].drain.rate / bare,
                        1.0))
        if 2 in r.scale:
            print(ratio("redis delivery: two processes / one",
                        r.scale[2].drain.rate / r.scale[1].drain.rate, 1.6))
            one, two = r.scale[1].drain, r.scale[2].drain
            if one.cores and two.cores:
                print(ratio("  per service core, two / one (diagnostic)",
                            (two.rate / two.cores) / (one.rate / one.cores), None))
            print(ratio("redis batch load: two processes / one",
                        r.scale[2].ingest.rate / r.scale[1].ingest.rate, None))
    elif "redis" in args.only:
        print(f"  redis: not measured\n    {r.scale}".replace("\n", "\n    "))
    for queue in ("sqlite", "redis"):
        alone, many = r.spread.get((queue, 1)), r.spread.get((queue, args.spread_endpoints))
        if alone and many and alone.rate:
            print(ratio(f"{args.spread_endpoints:,} endpoints / one ({queue})",
                        many.rate / alone.rate, 0.8))

    if r.single and 1000 in r.batch and r.drains:
        print("\nWhat 1M requests/s implies (per-core costs measured above):")
        for line in fleet(r.single, r.batch[1000], r.drains["crypitor"],
                          r.scale if isinstance(r.scale, dict) else None):
            print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="per single-ingest figure")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--batch-seconds", type=float, default=8.0)
    ap.add_argument("--batch-clients", type=int, default=4)
    ap.add_argument("--events", type=int, default=50_000, help="pre-loaded per drain")
    ap.add_argument("--concurrency", type=int, default=64,
                    help="the bare client's workers, and max_in_flight_per_endpoint")
    ap.add_argument("--spread-endpoints", type=int, default=5_000)
    ap.add_argument("--spread-events", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=200.0, help="events/s for latency")
    ap.add_argument("--latency-seconds", type=float, default=20.0)
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--only", default=",".join(SCENARIOS),
                    help=f"comma-separated subset of {', '.join(SCENARIOS)}")
    args = ap.parse_args()
    args.only = set(args.only.split(","))
    if args.no_redis:
        args.only.discard("redis")
    unknown = args.only - set(SCENARIOS)
    if unknown:
        ap.error(f"--only: unknown scenario(s) {', '.join(sorted(unknown))}")
    queues = ["sqlite"] + (["redis"] if not args.no_redis else [])
    started = time.monotonic()
    r = Results()
    with nginx_server(ports=2, keepalive=True) as (ports, nginx_pid):
        sink = f"http://127.0.0.1:{ports[1]}/hook"
        if "ingest" in args.only:
            step("single-event ingest: bare aiohttp, nginx, crypitor with and without fan-out")
            r.single = single_ingest(ports[0], nginx_pid, sink, args.connections, args.seconds)
            for size in (100, 1000):
                step(f"batch ingest, {size} events per request")
                r.batch[size] = batch_ingest(sink, args.batch_clients, args.batch_seconds, size)
        if "delivery" in args.only:
            step("delivery drain: crypitor, then the bare client loop")
            r.drains = delivery(sink, args.events, args.concurrency)
        if "spread" in args.only:
            for queue in queues:
                for n in (1, args.spread_endpoints):
                    step(f"{args.spread_events:,} deliveries to {n:,} endpoint(s) ({queue})")
                    r.spread[queue, n] = spread(sink, n, args.spread_events,
                                                args.spread_endpoints, args.concurrency, queue)
        if "latency" in args.only:
            step("latency at a steady load")
            r.lat = latency(args.rate, args.latency_seconds)
        if "redis" in args.only:
            try:
                scale: dict[int, Scale] = {}
                for n in (1, 2):
                    step(f"redis queue, {n} process(es)")
                    scale[n] = redis_scale(n, sink, args.events, args.concurrency)
                r.scale = scale
            except Exception as exc:  # reported, so the rest of the run is not lost
                r.scale = f"the Redis run failed: {exc}"
    report(args, r)
    print(f"\n(whole run: {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
