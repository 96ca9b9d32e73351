"""Processes the benchmarks start and measure: nginx (the targets), blackbox_exporter (the
peer), and `crypitor run`. CPU and memory are read from /proc, per process."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests.support.net import free_port

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu(pid: int) -> float:
    """`cpu_seconds` of `pid` plus its live children (e.g. nginx's master and worker)."""
    total = cpu_seconds(pid)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone since the listing
            continue
        if int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def need(binary: str, package: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}")
                                    .exists() else None)
    if path is None:
        sys.exit(f"{binary} not found: `make bench` installs the Debian package {package}")
    return path


def wait_http(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {seconds}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def nginx(ports: int = 8, keepalive: bool = False) -> Iterator[list[int]]:
    """nginx answering `200 ok` on `ports` loopback ports (several, so hundreds of fresh
    connections a second do not run one 4-tuple space out of ephemeral ports). Connections
    close after each answer unless `keepalive` (then they stay open for any number)."""
    with nginx_server(ports, keepalive) as (listen, _):
        yield listen


@contextlib.contextmanager
def nginx_server(ports: int = 8, keepalive: bool = False) -> Iterator[tuple[list[int], int]]:
    """`nginx()`, yielding (ports, master pid); `tree_cpu(pid)` includes its worker."""
    binary = need("nginx", "nginx-light")
    listen = [free_port() for _ in range(ports)]
    alive = ("keepalive_timeout 75s; keepalive_requests 100000000;" if keepalive
             else "keepalive_timeout 0;")
    with tempfile.TemporaryDirectory() as tmp:
        servers = "\n".join(
            f"server {{ listen 127.0.0.1:{p} reuseport backlog=4096;"
            f" location / {{ return 200 'ok\\n'; }} }}" for p in listen)
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(
            f"daemon off; worker_processes 1; pid {tmp}/nginx.pid; error_log {tmp}/error.log;"
            " events { worker_connections 16384; }"
            f" http {{ access_log off; client_body_temp_path {tmp}; proxy_temp_path {tmp};"
            f" fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};"
            f" {alive} {servers} }}")
        proc = subprocess.Popen([binary, "-p", tmp, "-c", str(conf)])
        try:
            wait_http(f"http://127.0.0.1:{listen[0]}/")
            yield listen, proc.pid
        finally:
            stop(proc)


@contextlib.contextmanager
def blackbox() -> Iterator[tuple[int, int]]:
    """blackbox_exporter with an http_2xx module; yields (port, pid)."""
    binary = need("prometheus-blackbox-exporter", "prometheus-blackbox-exporter")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "blackbox.yml"
        conf.write_text(yaml.safe_dump({"modules": {"http_2xx": {
            "prober": "http", "timeout": "5s", "http": {"preferred_ip_protocol": "ip4"}}}},
            sort_keys=False))
        proc = subprocess.Popen([binary, f"--config.file={conf}",
                                 f"--web.listen-address=127.0.0.1:{port}",
                                 "--log.level=warn"])
        try:
            wait_http(f"http://127.0.0.1:{port}/metrics")
            yield port, proc.pid
        finally:
            stop(proc)


@contextlib.contextmanager
def crypitor(config_text: str) -> Iterator[tuple[int, int]]:
    """`crypitor run` on `config_text` (must use the placeholder {listen}); yields
    (port, pid)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "config.toml"
        conf.write_text(config_text.replace("{listen}", f"127.0.0.1:{port}")
                        .replace("{data_dir}", f"{tmp}/data"))
        proc = subprocess.Popen([str(ROOT / ".venv/bin/crypitor"), "run", "-c", str(conf),
                                 "--log-level", "warning"])
        try:
            wait_http(f"http://127.0.0.1:{port}/healthz", 120)
            yield port, proc.pid
        finally:
            stop(proc)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as resp:
        text: str = resp.read().decode()
        return text


def sample_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line[len(name):len(name) + 1] not in ("{", " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[int, int]]:
    """redis-server on a loopback port, configured as the README asks of the cluster's Redis
    (append-only, fsync at every write, no eviction); yields (port, pid)."""
    binary = need("redis-server", "redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                                 "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                                 "--maxmemory-policy", "noeviction", "--dir", tmp,
                                 "--logfile", f"{tmp}/redis.log"])
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                        s.sendall(b"PING\r\n")
                        if s.recv(16).startswith(b"+PONG"):
                            break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("redis-server did not answer within 30 s") from None
                    time.sleep(0.05)
            yield port, proc.pid
        finally:
            stop(proc)
