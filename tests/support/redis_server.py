"""Real redis-server processes for the tests: one shared by the session (each test gets its own
key prefix on it), and a factory for tests that must stop, kill or restart their own server.
"""

from __future__ import annotations

import itertools
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.support.net import free_port
from tests.support.tools import installed

START_WAIT = 10.0  # redis-server answers within milliseconds; a loaded CI machine is slower
STOP_WAIT = 10.0
_prefixes = itertools.count(1)


class RedisServer:
    """One redis-server on a loopback port, configured as production should be: every write
    fsynced to the append-only file, nothing evicted."""

    def __init__(self, directory: Path, extra_args: Sequence[str] = ()) -> None:
        self.binary = installed("redis-server", "redis-server")
        self.directory = directory
        self.extra_args = tuple(extra_args)  # e.g. --replicaof of a replica
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or start again, on the same port and data directory) and wait for PING."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.directory),
                "--maxmemory-policy", "noeviction", "--logfile", str(self.directory / "redis.log"),
                *self.extra_args]
        self.process = subprocess.Popen(args, cwd=self.directory, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"redis-server exited with {self.process.returncode}: "
                            f"{self._log_tail()}")
            if self._pong():
                return
            time.sleep(0.02)
        self.stop()
        pytest.fail(f"redis-server on port {self.port} did not answer PING within "
                    f"{START_WAIT:g}s: {self._log_tail()}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM is a clean shutdown; SIGKILL is a crash, which the AOF must survive."""
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=STOP_WAIT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _log_tail(self) -> str:
        log = self.directory / "redis.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"


class RedisServers:
    """Starts servers on demand and stops every one of them at the end of the session."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._servers: list[RedisServer] = []

    def start(self) -> RedisServer:
        directory = self._root / f"redis-{len(self._servers)}"
        directory.mkdir()
        server = RedisServer(directory)
        self._servers.append(server)
        server.start()
        return server

    def stop_all(self) -> None:
        for server in self._servers:
            server.stop()


@dataclass(frozen=True)
class RedisKeyspace:
    """A server and a key prefix nothing else in the session uses."""

    url: str
    prefix: str


def fresh_prefix() -> str:
    return f"t{next(_prefixes)}-{secrets.token_hex(3)}"


@pytest.fixture(scope="session")
def redis_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServers]:
    servers = RedisServers(tmp_path_factory.mktemp("redis"))
    yield servers
    servers.stop_all()


@pytest.fixture(scope="session")
def redis_server(redis_servers: RedisServers) -> RedisServer:
    """Shared by the session: tests never restart it (start their own for that)."""
    return redis_servers.start()


@pytest.fixture
def redis_keyspace(redis_server: RedisServer) -> Iterator[RedisKeyspace]:
    space = RedisKeyspace(redis_server.url, fresh_prefix())
    yield space
    client = redis.Redis.from_url(space.url, socket_timeout=5)
    try:  # keep the shared server small over a long session
        keys = list(client.scan_iter(match=f"{space.prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
