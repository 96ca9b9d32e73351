"""What the status page costs with many targets: one build of `/api/v1/status`'s data from a
SQLite history holding every target's full 24 hours and 90 days, the page rendered from it,
its size, a cached answer, and the longest the event loop went unanswered meanwhile (the work
runs on worker threads, which still share the GIL).

    .venv/bin/python -m bench.status_page [--targets 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from monitor.config import StatusPageSection, TargetConfig
from monitor.runtime import TargetState, UptimeHistory
from monitor.web import Sources, StatusBoard
from monitor.web.statuspage import render_status_page


async def once(targets: int, directory: Path) -> str:
    now = time.time()
    history = UptimeHistory(directory / "history.sqlite3", clock=lambda: now)
    states = [TargetState(TargetConfig(f"t{i}", "http", "http://x/", 30.0, 10.0,
                                       {"team": f"g{i % 7}"})) for i in range(targets)]
    for s in states:
        for back in range(24):
            history.record(s.name, True, now - back * 3600, 0.05)
        for back in range(1, 90):
            history.record(s.name, True, now - back * 86400, 0.05)
    await history.flush()
    board = StatusBoard(states, history, StatusPageSection, Sources(),
                        lambda: datetime.now(UTC))
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now_ = time.perf_counter()
            gaps.append(now_ - last)
            last = now_

    task = asyncio.create_task(ticker())
    t = time.perf_counter()
    data = await board.status()
    build = time.perf_counter() - t
    t = time.perf_counter()
    html = await asyncio.to_thread(render_status_page, data)
    render = time.perf_counter() - t
    t = time.perf_counter()
    await board.status()
    cached = time.perf_counter() - t
    done.set()
    await task
    history.close()
    return (f"{targets} targets: build {build * 1000:.0f} ms, render {render * 1000:.0f} ms "
            f"({len(html) / 1e6:.1f} MB), cached {cached * 1000:.2f} ms, longest event-loop "
            f"stall {max(gaps) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            print(asyncio.run(once(args.targets, Path(d))))


if __name__ == "__main__":
    main()
