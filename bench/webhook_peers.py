"""The peers `bench.service` measures the webhook service against, each run as its own process
(uvloop, like `crypitor service`): a bare aiohttp "hello world", a receiving sink that
measures acceptance-to-delivery latency, and a bare aiohttp client loop.

    python -m bench.webhook_peers hello  --port P
    python -m bench.webhook_peers sink   --port P          # GET /stats: count, p50, p99
    python -m bench.webhook_peers client --url U --count N --concurrency C --seconds S
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import UTC, datetime

import aiohttp
import uvloop
from aiohttp import web

from bench.procs import cpu_seconds

# The event every scenario posts (single, in batches, and as delivery bodies).
EVENT = {"type": "tx.confirmed",
         "data": {"chain": "ethereum", "hash": "0x" + "ab" * 32, "value": "1.25"}}


def delivery_body(n: int) -> bytes:
    """A delivery's body shaped as the dispatcher builds it (`service.dispatcher.payload`)."""
    return json.dumps({"id": f"evt_{n:024x}", "type": EVENT["type"],
                       "timestamp": datetime.now(UTC).isoformat(),
                       "data": EVENT["data"]}, separators=(",", ":")).encode()


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def serve(app: web.Application, port: int) -> None:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()  # until the bench terminates the process


def hello_app() -> web.Application:
    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"id": "evt_0123456789abcdef01234567"}, status=202)

    async def healthz(_r: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/v1/events", accept)
    app.router.add_get("/healthz", healthz)
    return app


def sink_app() -> web.Application:
    """Answers every POST 200 and keeps, per delivery, now minus the payload's
    `timestamp` (the event's acceptance by the service)."""
    latencies: list[float] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        accepted = datetime.fromisoformat(json.loads(body)["timestamp"]).timestamp()
        latencies.append(time.time() - accepted)
        return web.Response(text="ok")

    async def stats(_r: web.Request) -> web.Response:
        return web.json_response({"count": len(latencies), "p50": quantile(latencies, 0.5),
                                  "p99": quantile(latencies, 0.99),
                                  "max": max(latencies, default=float("nan"))})

    async def reset(_r: web.Request) -> web.Response:
        latencies.clear()
        return web.json_response({"count": 0})

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_get("/healthz", stats)
    app.router.add_delete("/stats", reset)
    app.router.add_post("/{tail:.*}", receive)
    return app


async def client(url: str, count: int, concurrency: int, seconds: float) -> dict[str, float]:
    """POST `count` delivery bodies to `url` from `concurrency` workers on one pooled
    session, like the dispatcher does, but with no store, signing or bookkeeping."""
    bodies = [delivery_body(n) for n in range(count)]
    headers = {"Content-Type": "application/json", "User-Agent": "bench-client/1"}
    timeout = aiohttp.ClientTimeout(total=15)
    deadline = time.monotonic() + seconds
    ok = failed = 0
    next_body = 0
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def worker() -> None:
            nonlocal ok, failed, next_body
            while next_body < count and time.monotonic() < deadline:
                body = bodies[next_body]
                next_body += 1
                try:
                    async with http.post(url, data=body, headers=headers,
                                         allow_redirects=False) as resp:
                        await resp.content.read(4096)
                        ok += 200 <= resp.status < 300
                        failed += not 200 <= resp.status < 300
                except (aiohttp.ClientError, TimeoutError):
                    failed += 1

        cpu0, t0 = cpu_seconds(os.getpid()), time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed, cpu = time.monotonic() - t0, cpu_seconds(os.getpid()) - cpu0
    return {"ok": ok, "failed": failed, "seconds": elapsed, "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("role", choices=["hello", "sink", "client"])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--url", default="")
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    if args.role == "client":
        result = uvloop.run(client(args.url, args.count, args.concurrency, args.seconds))
        print(json.dumps(result), flush=True)
        return
    uvloop.run(serve(hello_app() if args.role == "hello" else sink_app(), args.port))


if __name__ == "__main__":
    main()
