"""What the drain hooks cost a request while nothing drains: `HardenedRunner`'s entry (the
readiness check in front of the application) and its response-prepare hook (issue 14), timed
around a handler that does nothing, against the bare handler. Single-process, in-memory: no
network noise, so the difference is the hooks' own cost (compare with the service's CPU per
request in `bench.service`).

    .venv/bin/python -m bench.drain_cost [--requests 200000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from core.httpserver import HardenedRunner


async def once(n: int) -> float:
    """Microseconds the hooks add to one request."""
    app = web.Application()
    runner = HardenedRunner(app)
    app.freeze()
    request = make_mocked_request("POST", "/v1/events", app=app)
    response = web.Response(text="x")

    async def handler(_: web.Request) -> web.StreamResponse:
        return response

    started = time.perf_counter()
    for _ in range(n):
        await handler(request)
    bare = time.perf_counter() - started
    serve = runner.entry(handler)
    started = time.perf_counter()
    for _ in range(n):
        await serve(request)  # the hooks as aiohttp calls them
        await app.on_response_prepare.send(request, response)
    hooked = time.perf_counter() - started
    return (hooked - bare) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    costs = [asyncio.run(once(args.requests)) for _ in range(args.runs)]
    print(f"drain hooks: median {statistics.median(costs):.2f} µs per request "
          f"(runs: {', '.join(f'{c:.2f}' for c in costs)})")


if __name__ == "__main__":
    main()
