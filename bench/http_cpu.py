"""HTTP probing: CPU-seconds per probe, crypitor against prometheus-blackbox-exporter.

Same machine, same run, same local targets (nginx), same semantics (one fresh connection
per probe, full response read). Counted: our whole `crypitor run` process (scheduler,
probes, metrics) against the blackbox_exporter process; the driver that asks blackbox for
probes (standing in for Prometheus) is not counted.

Then, not counted in the ratio, where our per-probe CPU goes: the same config runs in this
process (`Runtime`, on uvloop, [cluster] off, as `crypitor run` runs it) for a window
without a profiler (the plain CPU per probe) and one under cProfile. Each profiled
function's own time goes to a part: the functions of a part's code are its own (table
PARTS), any other function (builtins, asyncio, dataclasses...) is shared out among the
parts of its callers, in proportion to the time each caller spent in it (gprof's rule, one
caller deep). What the profiler saw of no part, and the main thread's CPU it did not see at
all (uvloop's C callbacks, sockets, GC), is "event loop & other"; worker threads (SQLite
writes) are counted apart. cProfile's own overhead inflates Python-heavy parts, so read the
shares and compare them run to run; the plain figure is the real cost.

    .venv/bin/python -m bench.http_cpu [--targets 100] [--seconds 60] [--profile-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

from bench.probe_profile import Breakdown, profile_runtime
from bench.procs import blackbox, cpu_seconds, crypitor, nginx, sample_sum, scrape

WARMUP = 5.0


def our_config(urls: list[str]) -> str:
    head = '[monitor]\nlisten = "{listen}"\ndata_dir = "{data_dir}"\n[service]\nenabled = false\n'
    targets = "".join(
        f'[[targets]]\nname = "t{i}"\ntype = "http"\nurl = "{u}"\ninterval = "1s"\n'
        f'timeout = "1s"\n' for i, u in enumerate(urls))
    return head + targets


def measure_ours(urls: list[str], seconds: float) -> tuple[int, float, float]:
    """(probes, cpu seconds, success ratio) over `seconds` after a warm-up."""
    with crypitor(our_config(urls)) as (port, pid):
        time.sleep(WARMUP)
        before = scrape(port)
        cpu0 = cpu_seconds(pid)
        time.sleep(seconds)
        cpu1 = cpu_seconds(pid)
        after = scrape(port)
    ok = sample_sum(after, "crypitor_probes_total", result="success") - \
        sample_sum(before, "crypitor_probes_total", result="success")
    bad = sample_sum(after, "crypitor_probes_total", result="failure") - \
        sample_sum(before, "crypitor_probes_total", result="failure")
    total = int(ok + bad)
    return total, cpu1 - cpu0, ok / total if total else 0.0


async def drive_blackbox(port: int, urls: list[str], seconds: float) -> tuple[int, int]:
    """Ask blackbox for one probe per target per second, like Prometheus scraping each
    target every 1 s at its own offset. Returns (probes, successes)."""
    probes = successes = 0
    deadline = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as http:

        async def target(i: int, url: str) -> None:
            nonlocal probes, successes
            next_at = time.monotonic() + i / len(urls)
            while next_at < deadline:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += 1.0
                try:
                    async with http.get(f"http://127.0.0.1:{port}/probe",
                                        params={"target": url, "module": "http_2xx"}) as r:
                        body = await r.text()
                except (aiohttp.ClientError, TimeoutError):
                    probes += 1
                    continue
                probes += 1
                successes += "\nprobe_success 1" in body

        await asyncio.gather(*(target(i, u) for i, u in enumerate(urls)))
    return probes, successes


def measure_blackbox(urls: list[str], seconds: float) -> tuple[int, float, float]:
    with blackbox() as (port, pid):
        asyncio.run(drive_blackbox(port, urls, WARMUP))
        cpu0 = cpu_seconds(pid)
        probes, ok = asyncio.run(drive_blackbox(port, urls, seconds))
        cpu1 = cpu_seconds(pid)
    return probes, cpu1 - cpu0, ok / probes if probes else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--profile-seconds", type=float, default=20.0,
                    help="the in-process windows (plain, then profiled); 0: no breakdown")
    args = ap.parse_args()
    breakdown: Breakdown | None = None
    with nginx() as ports:
        urls = [f"http://127.0.0.1:{ports[i % len(ports)]}/t{i}" for i in range(args.targets)]
        rows = {
            "blackbox_exporter": measure_blackbox(urls, args.seconds),
            "crypitor": measure_ours(urls, args.seconds),
        }
        if args.profile_seconds > 0:
            breakdown = profile_runtime(our_config(urls), args.profile_seconds, WARMUP)
    print(f"\nHTTP probing, {args.targets} targets at 1 s, {args.seconds:g} s measured")
    print(f"{'':20}{'probes':>8}{'CPU s':>9}{'ms CPU/probe':>14}{'success':>9}")
    per_probe = {}
    for name, (probes, cpu, ok) in rows.items():
        per_probe[name] = cpu / probes * 1000 if probes else float("inf")
        print(f"{name:20}{probes:>8}{cpu:>9.2f}{per_probe[name]:>14.3f}{ok:>9.1%}")
    ratio = per_probe["blackbox_exporter"] / per_probe["crypitor"]
    print(f"\nratio: crypitor uses {ratio:.1f}x less CPU per probe than blackbox_exporter"
          f" (goal: at least 3x)")
    if breakdown is not None:
        print("\n".join(breakdown.lines()))


if __name__ == "__main__":
    main()
