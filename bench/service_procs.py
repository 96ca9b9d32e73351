"""Processes the webhook-service benchmark starts: `crypitor service` on a temporary config,
redis-server (AOF, fsync always), the peers of `bench.webhook_peers`, and `wrk` driven by a
Lua script. Each is bounded in time and stopped by the context that started it."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import CLK_TCK, ROOT, need, sample_sum, scrape, stop, wait_http
from tests.support.net import free_port

API_KEY = "bench-key"
AUTH = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


@dataclass(frozen=True)
class Proc:
    port: int
    pid: int
    log: Path | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 15) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def service(queue: str = "sqlite", max_in_flight: int = 10) -> Iterator[Proc]:
    """`crypitor service` alone on a fresh data_dir, answering `API_KEY`, private targets
    allowed (every sink is on loopback)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-svc-") as tmp:
        conf = Path(tmp) / "config.toml"
        conf.write_text(
            f'[monitor]\nlisten = "127.0.0.1:{free_port()}"\ndata_dir = "{tmp}/data"\n'
            f'[service]\nlisten = "127.0.0.1:{port}"\napi_keys = ["{API_KEY}"]\n'
            f'allow_private_targets = true\nqueue = "{queue}"\n'
            f"max_in_flight_per_endpoint = {max_in_flight}\n")
        log = Path(tmp) / "service.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([str(ROOT / ".venv/bin/crypitor"), "service", "-c",
                                     str(conf), "--log-level", "warning"],
                                    stdout=out, stderr=subprocess.STDOUT)
            running = Proc(port, proc.pid, log)
            try:
                try:
                    wait_http(f"{running.base}/healthz", 60)
                except RuntimeError as exc:
                    raise RuntimeError(f"{exc}; service log:\n{running.log_tail()}") from None
                yield running
            finally:
                stop(proc)


@contextlib.contextmanager
def redis_server() -> Iterator[Proc]:
    """redis-server on a free port in a temporary dir, every write fsynced (AOF, always)."""
    binary = need("redis-server", "redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--maxmemory-policy", "noeviction", "--logfile", f"{tmp}/redis.log"],
            stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 15
            while not _redis_ping(port):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"redis-server on port {port} did not start")
                time.sleep(0.05)
            yield Proc(port, proc.pid, Path(tmp) / "redis.log")
        finally:
            stop(proc)


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def peer(role: str) -> Iterator[Proc]:
    """A `bench.webhook_peers` server (`hello` or `sink`) in its own process."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.webhook_peers", role,
                             "--port", str(port)], cwd=ROOT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 30)
        yield Proc(port, proc.pid)
    finally:
        stop(proc)


def client_loop(url: str, count: int, concurrency: int, seconds: float) -> dict[str, float]:
    """The bare aiohttp client loop, in its own process; its own JSON report."""
    out = subprocess.run([sys.executable, "-m", "bench.webhook_peers", "client", "--url", url,
                          "--count", str(count), "--concurrency", str(concurrency),
                          "--seconds", str(seconds)],
                         cwd=ROOT, capture_output=True, check=True, timeout=seconds + 30)
    result: dict[str, float] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


# --- the service's API and metrics ---------------------------------------------------------
def api(port: int, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers=AUTH)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def add_endpoint(port: int, url: str, event_types: list[str] | None = None,
                 rate_limit: float | None = None) -> str:
    body: dict[str, Any] = {"url": url}
    if event_types is not None:
        body["event_types"] = event_types
    if rate_limit is not None:
        body["rate_limit"] = rate_limit
    endpoint_id: str = api(port, "POST", "/v1/endpoints", body)["id"]
    return endpoint_id


def counters(ports: list[int]) -> tuple[float, float]:
    """(events received, successful deliveries), summed over the service processes."""
    received = delivered = 0.0
    for port in ports:
        text = scrape(port)
        received += sample_sum(text, "crypitor_webhook_events_received_total")
        delivered += sample_sum(text, "crypitor_webhook_deliveries_total", outcome="success")
    return received, delivered


def wait_delivered(ports: list[int], target: float, seconds: float) -> tuple[float, float]:
    """Poll until `target` successful deliveries (or `seconds` pass); returns (monotonic time
    it was seen, deliveries seen)."""
    deadline = time.monotonic() + seconds
    while True:
        now = time.monotonic()  # before the scrape, as the drain's start is taken
        _, delivered = counters(ports)
        if delivered >= target or now > deadline:
            return now, delivered
        time.sleep(0.1)


def machine_busy() -> float:
    """CPU-seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / CLK_TCK


# --- wrk -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int  # non-2xx answers plus socket errors
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


_LUA = """
wrk.method = "POST"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
done = function(s, latency, requests)
  local e = s.errors
  io.write(string.format('WRK_JSON {"requests":%%d,"us":%%d,"errors":%%d,'
    .. '"p50":%%d,"p99":%%d}\\n', s.requests, s.duration,
    e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(url: str, body: bytes, connections: int, seconds: float) -> WrkResult:
    """One wrk thread POSTing `body` over `connections` keep-alive connections for
    `seconds` (wrk always runs its whole duration)."""
    binary = need("wrk", "wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_LUA % {"body": body.decode(), "key": API_KEY})
    try:
        out = subprocess.run([binary, "-t1", f"-c{connections}", f"-d{seconds:g}s",
                              "--timeout", "10s", "-s", script.name, url],
                             capture_output=True, check=True, timeout=seconds + 30)
    finally:
        Path(script.name).unlink()
    line = next(x for x in out.stdout.decode().splitlines() if x.startswith("WRK_JSON "))
    r = json.loads(line.removeprefix("WRK_JSON "))
    return WrkResult(r["requests"], r["us"] / 1e6, r["errors"], r["p50"] / 1e3,
                     r["p99"] / 1e3)
