"""Where crypitor's per-probe CPU goes: `crypitor run`'s Runtime in this process, profiled.

`profile_runtime` starts a Runtime on a config file (on uvloop, as `crypitor run` does),
lets it warm up, measures a plain window (CPU per probe with no profiler) and a window under
cProfile, and returns a `Breakdown`. `attribute` turns cProfile's statistics into parts:

- a function of a part's own code (`PARTS`: by file, or by file and name) is that part's;
- any other function (builtins, asyncio, dataclasses, datetime...) is shared out among the
  parts of its callers, in proportion to the time each caller spent in it (gprof's rule,
  one caller deep), iterated until stable (call cycles);
- a function with no part and no caller (a callback uvloop calls from C) is "event loop".

The main thread's CPU the profiler did not see inside any function (uvloop's C callbacks,
socket calls, the garbage collector, the process's sleeps and wake-ups) is "event loop"
too; worker threads (the history's and
the alert store's SQLite writes) are counted apart from the main thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import pstats
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import generate_latest

from monitor.app import Runtime
from monitor.config import load

# (part, a fragment of the file's path, the function's name or "" for every function of
# that file); the first match wins. The order of the parts is the order they print in.
PARTS: tuple[tuple[str, str, str], ...] = (
    ("scheduler", "/monitor/runtime/scheduler.py", "run_bounded"),
    ("scheduler", "/monitor/runtime/scheduler.py", ""),
    ("scheduler", "/apscheduler/", ""),  # the rounds' jobs (before issue 16: one per target)
    ("probe I/O", "/probes/", ""),
    ("probe I/O", "/httptools/", ""),
    ("state", "/monitor/runtime/state.py", ""),
    ("state", "/monitor/app.py", "_on_result"),
    ("evaluation", "/monitor/alerting_setup.py", "observe"),
    ("evaluation", "/alerts/alerting.py", "observe"),
    ("evaluation", "/alerts/alerting.py", "_apply"),
    ("evaluation", "/alerts/evaluate.py", "observe"),
    ("alert flush (1/s)", "/alerts/alerting.py", ""),
    ("alert flush (1/s)", "/core/supervisor.py", ""),
    ("metrics", "/prometheus_client/", ""),
    ("metrics", "/monitor/exporters/", ""),
    ("history", "/monitor/runtime/history.py", ""),
    ("history", "/monitor/app.py", "_flush_loop"),
)
ORDER = ("scheduler", "probe I/O", "state", "evaluation", "alert flush (1/s)", "metrics",
         "history", "event loop")
LOOP = "event loop"

Func = tuple[str, int, str]  # cProfile's key: file, line, name
# cProfile's raw statistics: func -> (primitive calls, calls, own time, cumulative time,
# {caller: (primitive calls, calls, own time, cumulative time)})
Stats = Mapping[Func, tuple[int, int, float, float, Mapping[Func, tuple[int, int, float, float]]]]


def part_of(func: Func) -> str | None:
    """The part whose own code `func` is, or None (shared by its callers)."""
    path, _, name = func
    for part, fragment, wanted in PARTS:
        if fragment in path and (not wanted or wanted == name):
            return part
    return None


def attribute(stats: Stats, rounds: int = 50) -> dict[str, float]:
    """Own time of every profiled function, summed by part (seconds)."""
    shares: dict[Func, dict[str, float]] = {}
    for func in stats:
        part = part_of(func)
        shares[func] = {part if part is not None else LOOP: 1.0}
    shared = [f for f in stats if part_of(f) is None and stats[f][4]]
    for _ in range(rounds):  # bounded: enough for the call chains of shared code
        changed = False
        for func in shared:
            callers = stats[func][4]
            weights = {c: (edge[3] or edge[1]) for c, edge in callers.items() if c in shares}
            total = sum(weights.values())
            if not total:
                continue
            mix: dict[str, float] = {}
            for caller, weight in weights.items():
                for part, share in shares[caller].items():
                    mix[part] = mix.get(part, 0.0) + share * weight / total
            if mix != shares[func]:
                shares[func], changed = mix, True
        if not changed:
            break
    out = dict.fromkeys(ORDER, 0.0)
    for func, (_, _, own, _, _) in stats.items():
        for part, share in shares[func].items():
            out[part] = out.get(part, 0.0) + own * share
    return out


@dataclass(frozen=True)
class Breakdown:
    """One in-process run: the plain window's CPU per probe, and the profiled window's
    parts (CPU seconds each) over its probes."""

    plain_probes: int
    plain_cpu: float  # process CPU over the plain window
    plain_wakeups: int  # the main thread's voluntary context switches (sleeps) over it
    probes: int  # in the profiled window
    parts: Mapping[str, float]  # main thread, by part (profiled window)
    threads: float  # worker threads' CPU in the profiled window
    scrape: float  # CPU of rendering /metrics once (not per probe; not in the ratio)

    @property
    def plain_per_probe(self) -> float:
        return self.plain_cpu / self.plain_probes if self.plain_probes else float("inf")

    def lines(self) -> list[str]:
        n = self.probes or 1
        total = sum(self.parts.values()) + self.threads
        out = [f"\nwhere crypitor's CPU per probe goes (in process, {self.probes} probes under"
               " cProfile; the profiler inflates Python-heavy parts)",
               f"{'':22}{'µs/probe':>10}{'share':>8}"]
        for part in ORDER:
            spent = self.parts.get(part, 0.0)
            out.append(f"{part:22}{spent / n * 1e6:>10.1f}{spent / total:>8.1%}")
        out.append(f"{'worker threads':22}{self.threads / n * 1e6:>10.1f}"
                   f"{self.threads / total:>8.1%}")
        out.append(f"{'total, profiled':22}{total / n * 1e6:>10.1f}")
        out.append(f"{'total, no profiler':22}{self.plain_per_probe * 1e6:>10.1f}"
                   f"   ({self.plain_probes} probes, "
                   f"{self.plain_wakeups / (self.plain_probes or 1):.2f} wake-ups per probe)")
        out.append(f"one /metrics render: {self.scrape * 1e3:.2f} ms CPU (at scrape, not per"
                   " probe)")
        return out


def _probes(runtime: Runtime) -> int:
    return sum(s.successes + s.failures for s in runtime.states)


def _main_cpu(ident: int) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(ident))


def _sleeps() -> int:
    """How often this (the main) thread went to sleep: each sleep is a wake-up later, which
    costs CPU of its own (tens of µs on a virtual machine)."""
    status = Path(f"/proc/self/task/{threading.get_native_id()}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines()
                if line.startswith("voluntary_ctxt_switches:"))


async def _profile(config_path: Path, warmup: float, plain: float,
                   seconds: float) -> Breakdown:
    runtime = Runtime(load(config_path))
    await runtime.start()
    try:
        await asyncio.sleep(warmup)
        n0, cpu0, sleeps0 = _probes(runtime), time.process_time(), _sleeps()
        await asyncio.sleep(plain)
        plain_probes, plain_cpu = _probes(runtime) - n0, time.process_time() - cpu0
        plain_wakeups = _sleeps() - sleeps0
        main = threading.get_ident()
        profiler = cProfile.Profile()
        n0, main0, cpu0 = _probes(runtime), _main_cpu(main), time.process_time()
        profiler.enable()
        await asyncio.sleep(seconds)
        await runtime.history.flush()  # once a minute otherwise; what it writes is this window's
        profiler.disable()
        probes = _probes(runtime) - n0
        main_cpu, cpu = _main_cpu(main) - main0, time.process_time() - cpu0
        t0 = time.process_time()
        generate_latest(runtime.registry)
        scrape = time.process_time() - t0
    finally:
        await runtime.stop()
    stats: Stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    parts = attribute(stats)
    parts[LOOP] += max(0.0, main_cpu - sum(parts.values()))  # what cProfile never saw
    return Breakdown(plain_probes, plain_cpu, plain_wakeups, probes, parts,
                     max(0.0, cpu - main_cpu), scrape)


@contextlib.contextmanager
def _config_file(text: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(text.replace("{data_dir}", f"{tmp}/data"))
        yield path


def profile_runtime(config_text: str, seconds: float, warmup: float = 5.0,
                    plain: float | None = None) -> Breakdown:
    """Run `config_text` (its `{listen}` and `{data_dir}` placeholders filled here) in this
    process: `warmup`, a plain window of `plain` seconds (default: `seconds`), then
    `seconds` under cProfile."""
    from tests.support.net import free_port

    text = config_text.replace("{listen}", f"127.0.0.1:{free_port()}")
    with _config_file(text) as path:
        import uvloop

        return uvloop.run(_profile(path, warmup, seconds if plain is None else plain,
                                   seconds))
