"""Capacity of one `crypitor run` process: how many HTTP targets at a 30 s interval it keeps
with p99 scheduler lag under 1 s, and its resident memory per target.

For each size, the monitor probes nginx on loopback for two full intervals after the first
round; lag comes from the `crypitor_scheduler_lag_seconds` histogram over that window.

    .venv/bin/python -m bench.capacity [--sizes 1000,5000,10000,20000] [--interval 30]
"""

from __future__ import annotations

import argparse
import time

from bench.http_cpu import our_config
from bench.procs import cpu_seconds, crypitor, nginx, rss_bytes, sample_sum, scrape

LAG = "crypitor_scheduler_lag_seconds"


def buckets(text: str) -> dict[float, float]:
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{LAG}_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def p99(before: str, after: str) -> tuple[float, float, int]:
    """(upper bound of the p99 bucket, share of fires under 1 s, fires) between scrapes."""
    b0, b1 = buckets(before), buckets(after)
    delta = {le: b1[le] - b0.get(le, 0.0) for le in sorted(b1)}
    total = delta[float("inf")]
    if not total:
        return float("inf"), 0.0, 0
    bound = next(le for le, n in delta.items() if n >= 0.99 * total)
    return bound, delta.get(1.0, 0.0) / total, int(total)


def run_size(urls: list[str], interval: float) -> dict[str, float]:
    text = our_config(urls).replace('interval = "1s"', f'interval = "{interval:g}s"') \
        .replace('timeout = "1s"', 'timeout = "5s"')
    started = time.monotonic()
    with crypitor(text) as (port, pid):
        startup = time.monotonic() - started
        time.sleep(interval + 2)  # the first round, spread over one interval
        before = scrape(port)
        cpu0 = cpu_seconds(pid)
        time.sleep(2 * interval)
        cpu1 = cpu_seconds(pid)
        after = scrape(port)
        rss = rss_bytes(pid)
    bound, under_1s, fires = p99(before, after)
    ok = sample_sum(after, "crypitor_probes_total", result="success") - \
        sample_sum(before, "crypitor_probes_total", result="success")
    probes = sample_sum(after, "crypitor_probes_total") - \
        sample_sum(before, "crypitor_probes_total")
    return {"p99_bound": bound, "under_1s": under_1s, "fires": fires, "rss": rss,
            "cpu": (cpu1 - cpu0) / (2 * interval), "success": ok / probes if probes else 0.0,
            "startup": startup}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,5000,10000,20000")
    ap.add_argument("--interval", type=float, default=30.0)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    with nginx(ports=16) as ports:
        base = run_size([], args.interval)
        for n in sizes:
            urls = [f"http://127.0.0.1:{ports[i % len(ports)]}/t{i}" for i in range(n)]
            results[n] = run_size(urls, args.interval)
            print(f"{n} targets done: {results[n]}", flush=True)
    print(f"\nCapacity at a {args.interval:g} s interval (baseline RSS with no targets: "
          f"{base['rss'] / 2**20:.0f} MiB)")
    print(f"{'targets':>8}{'fires':>8}{'p99 lag ≤':>11}{'<1 s':>8}{'CPU':>7}{'success':>9}"
          f"{'RSS MiB':>9}{'KiB/target':>11}{'start s':>9}")
    for n, r in results.items():
        per_target = (r["rss"] - base["rss"]) / n / 1024
        print(f"{n:>8}{r['fires']:>8.0f}{r['p99_bound']:>10g}s{r['under_1s']:>8.1%}"
              f"{r['cpu']:>7.0%}{r['success']:>9.1%}{r['rss'] / 2**20:>9.0f}"
              f"{per_target:>11.1f}{r['startup']:>9.1f}")
    ok = [n for n, r in results.items() if r["under_1s"] >= 0.99 and r["success"] >= 0.99]
    print(f"\nmost targets with p99 lag under 1 s and 99% success: {max(ok) if ok else 0}")


if __name__ == "__main__":
    main()
