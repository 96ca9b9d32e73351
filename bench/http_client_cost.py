"""CPU per HTTP request of our lean client (`probes.httpwire`, and the whole `HttpProbe.run`)
against aiohttp's client with a force-close connector, on asyncio's loop and on uvloop.

Every request opens a fresh connection to a tiny server in another process and reads the
whole answer; the CPU counted is this process's (time.process_time).

    .venv/bin/python -m bench.http_client_cost [--requests 2000] [--concurrency 50] [--tls]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import trustme
import uvloop

from probes.base import ProbeContext
from probes.http import HttpOptions, HttpProbe
from probes.httpwire import Request, Trace, Url, fetch, tls_context

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
Call = Callable[[], Awaitable[object]]


def serve(port: multiprocessing.SimpleQueue[int], cert: str, key: str) -> None:
    """The target: answers every request at once, then closes (runs in its own process)."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ANSWER)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        tls = None
        if cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(cert, key)
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls, backlog=1024)
        port.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    uvloop.run(main())


async def measure(call: Call, requests: int, concurrency: int) -> tuple[float, float]:
    """(µs CPU per request sequentially, the same with `concurrency` in flight)."""
    for _ in range(50):
        await call()
    t0 = time.process_time()
    for _ in range(requests):
        await call()
    sequential = (time.process_time() - t0) / requests * 1e6
    t0 = time.process_time()
    for _ in range(requests // concurrency):
        await asyncio.gather(*(call() for _ in range(concurrency)))
    concurrent = (time.process_time() - t0) / (requests // concurrency * concurrency) * 1e6
    return sequential, concurrent


async def run_all(url: str, ca_file: str, requests: int,
                  concurrency: int) -> dict[str, tuple[float, float]]:
    request = Request(Url(url))
    tls = tls_context(True, ca_file) if url.startswith("https") else None
    out: dict[str, tuple[float, float]] = {}

    async def wire() -> object:
        return await fetch(request, Trace(), tls)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        probe = HttpProbe(url, 5.0, HttpOptions(tls_ca_file=ca_file), ProbeContext(s))
        client_tls = tls_context(True, ca_file) if tls else False

        async def with_aiohttp() -> object:
            async with s.get(url, ssl=client_tls) as response:
                return await response.read()

        async def whole_probe() -> object:
            result = await probe.run()
            assert result.success, result.detail
            return result

        for name, call in (("httpwire.fetch", wire), ("HttpProbe.run", whole_probe),
                           ("aiohttp force_close", with_aiohttp)):
            out[name] = await measure(call, requests, concurrency)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--tls", action="store_true", help="https with a trustme certificate")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cert = key = ca_file = ""
        if args.tls:
            ca = trustme.CA()
            leaf = ca.issue_cert("127.0.0.1")
            cert, key, ca_file = (str(Path(tmp) / n) for n in ("cert.pem", "key.pem", "ca.pem"))
            leaf.cert_chain_pems[0].write_to_path(cert)
            leaf.private_key_pem.write_to_path(key)
            ca.cert_pem.write_to_path(ca_file)
        ports: multiprocessing.SimpleQueue[int] = multiprocessing.SimpleQueue()
        server = multiprocessing.Process(target=serve, args=(ports, cert, key), daemon=True)
        server.start()
        url = f"{'https' if args.tls else 'http'}://127.0.0.1:{ports.get()}/"
        try:
            print(f"{url}: {args.requests} requests, concurrency {args.concurrency}; "
                  "µs of client CPU per request (sequential / concurrent)")
            for loop_name, factory in (("asyncio", asyncio.new_event_loop),
                                       ("uvloop", uvloop.new_event_loop)):
                with asyncio.Runner(loop_factory=factory) as runner:
                    rows = runner.run(run_all(url, ca_file, args.requests, args.concurrency))
                base = rows["aiohttp force_close"]
                for name, (seq, conc) in rows.items():
                    print(f"  {loop_name:8} {name:20} {seq:8.0f} / {conc:8.0f}   "
                          f"aiohttp/this: {base[0] / seq:4.1f}x / {base[1] / conc:4.1f}x")
        finally:
            server.terminate()
            server.join()


if __name__ == "__main__":
    main()
