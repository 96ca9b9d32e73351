"""The monitor cluster against one instance, same targets, same machine, same run: three
`crypitor run` instances in one location on one redis-server, then one instance alone, each
probing the same nginx targets (default 3,000 at a 30 s interval).

Printed:
- probes per target per interval, from the instances' `crypitor_probes_total` over two
  intervals after a warm-up (goal: exactly 1 in the cluster's one location);
- failover time: one instance is `kill -9`'d; for each target it probed, the time until a
  survivor probed it (from the survivors' `crypitor_probe_last_run_timestamp_seconds`); goal
  at most lease + 2 intervals;
- CPU per probe: the cluster's three instances plus redis-server, against the single
  instance's (goal: at most 1.3x).

    .venv/bin/python -m bench.cluster [--targets 3000] [--interval 30] [--lease 10]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import time
from collections.abc import Iterator

from bench.procs import cpu_seconds, crypitor, nginx, redis_server, sample_sum, scrape

LAST_RUN = "crypitor_probe_last_run_timestamp_seconds"


def config(urls: list[str], interval: float, cluster: str) -> str:
    head = ('[monitor]\nlisten = "{listen}"\ndata_dir = "{data_dir}"\n'
            '[service]\nenabled = false\n' + cluster)
    return head + "".join(
        f'[[targets]]\nname = "t{i}"\ntype = "http"\nurl = "{u}"\n'
        f'interval = "{interval:g}s"\ntimeout = "5s"\n' for i, u in enumerate(urls))


def cluster_section(redis_port: int, instance: str, lease: float) -> str:
    return (f'[cluster]\nredis = "redis://127.0.0.1:{redis_port}/0"\nlocation = "bench"\n'
            f'instance = "{instance}"\nlease = "{lease:g}s"\n')


def probes(texts: list[str]) -> float:
    return sum(sample_sum(t, "crypitor_probes_total") for t in texts)


def last_runs(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(LAST_RUN + "{"):
            target = line.split('target="', 1)[1].split('"', 1)[0]
            out[target] = float(line.rsplit(" ", 1)[1])
    return out


@contextlib.contextmanager
def instances(urls: list[str], interval: float, redis_port: int, lease: float,
              count: int) -> Iterator[list[tuple[int, int]]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(crypitor(config(
            urls, interval, cluster_section(redis_port, f"bench-{i}", lease))))
            for i in range(count)]


def measure(ports_pids: list[tuple[int, int]], extra_pids: list[int],
            window: float) -> tuple[float, float, list[float]]:
    """(probes, CPU seconds of the processes and `extra_pids`, CPU seconds of each: the
    instances then the extras) over `window` seconds."""
    pids = [pid for _, pid in ports_pids] + extra_pids
    before = probes([scrape(port) for port, _ in ports_pids])
    cpu0 = [cpu_seconds(p) for p in pids]
    time.sleep(window)
    cpu1 = [cpu_seconds(p) for p in pids]
    after = probes([scrape(port) for port, _ in ports_pids])
    each = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
    return after - before, sum(each), each


def failover(ports_pids: list[tuple[int, int]], interval: float,
             lease: float) -> list[float]:
    """Kill the first instance; seconds until each of its targets was probed by another."""
    port, pid = ports_pids[0]
    mine = set(last_runs(scrape(port)))
    os.kill(pid, signal.SIGKILL)
    killed = time.time()
    seen: dict[str, float] = {}
    deadline = time.monotonic() + lease + 3 * interval
    while time.monotonic() < deadline and len(seen) < len(mine):
        time.sleep(1.0)
        for other, _ in ports_pids[1:]:
            for target, at in last_runs(scrape(other)).items():
                if target in mine and target not in seen and at > killed:
                    seen[target] = at - killed
    missing = len(mine) - len(seen)
    return sorted(seen.values()) + [float("inf")] * missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=3000)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--lease", type=float, default=10.0)
    args = parser.parse_args()
    interval, lease = args.interval, args.lease
    window = 2 * interval
    with nginx() as ports:
        urls = [f"http://127.0.0.1:{ports[i % len(ports)]}/t{i}" for i in range(args.targets)]
        with redis_server() as (redis_port, redis_pid), \
                instances(urls, interval, redis_port, lease, 3) as cluster:
            time.sleep(interval + 5)  # joined, and the first round spread over an interval
            c_probes, c_cpu, c_each = measure(cluster, [redis_pid], window)
            times = failover(cluster, interval, lease)
        with crypitor(config(urls, interval, "")) as single:
            time.sleep(interval + 5)
            s_probes, s_cpu, _ = measure([single], [], window)
    per_c = c_probes / args.targets / (window / interval)
    per_s = s_probes / args.targets / (window / interval)
    c_cost, s_cost = c_cpu / max(c_probes, 1), s_cpu / max(s_probes, 1)
    print(f"{args.targets} HTTP targets at {interval:g}s, lease {lease:g}s, one location")
    print(f"probes per target per interval: cluster of 3 {per_c:.3f}, single {per_s:.3f}")
    finite = [t for t in times if t != float("inf")]
    print(f"failover after kill -9 of one of 3: {len(times)} targets moved, "
          f"median {statistics.median(finite) if finite else float('nan'):.1f}s, "
          f"max {max(times):.1f}s (goal <= lease + 2 intervals = {lease + 2 * interval:g}s)")
    print(f"CPU per probe: cluster (3 instances + redis) {c_cost * 1e6:.0f} us, single "
          f"{s_cost * 1e6:.0f} us, ratio {c_cost / s_cost:.2f}x (goal <= 1.3x)")
    split = ", ".join(f"instance {i} {cpu / max(c_probes, 1) * 1e6:.0f} us"
                      for i, cpu in enumerate(c_each[:-1]))
    print(f"  the cluster's CPU per probe by process: {split}, "
          f"redis-server {c_each[-1] / max(c_probes, 1) * 1e6:.0f} us")


if __name__ == "__main__":
    main()
