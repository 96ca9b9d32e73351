"""A real Redis Sentinel group for the tests that fail a primary over: one primary, two
replicas and three Sentinels (Debian's `redis-sentinel`), each on a free loopback port.
Two replicas, because the store acknowledges an event only once a replica has it: after a
failover the promoted replica still has one.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.net import free_port
from tests.support.redis_server import RedisServer
from tests.support.tools import installed

SERVICE = "crypitor"
READY_WAIT = 30.0  # the Sentinels find the replica and each other within a few seconds
DOWN_AFTER_MS = 1000  # a primary silent this long is down: the failover takes a few seconds


class SentinelGroup:
    """The primary and replicas are `RedisServer`s; `url` is the redis+sentinel:// address."""

    def __init__(self, root: Path) -> None:
        self.binary = installed("redis-sentinel", "redis-sentinel")
        (root / "primary").mkdir()
        self.primary = RedisServer(root / "primary")
        self.replicas: list[RedisServer] = []
        for i in range(2):
            (root / f"replica-{i}").mkdir()
            self.replicas.append(RedisServer(
                root / f"replica-{i}", ["--replicaof", "127.0.0.1", str(self.primary.port)]))
        self.root = root
        self.ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> None:
        self.primary.start()
        for replica in self.replicas:
            replica.start()
        for i, port in enumerate(self.ports):
            directory = self.root / f"sentinel-{i}"
            directory.mkdir()
            conf = directory / "sentinel.conf"  # Sentinel rewrites its own config file
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"logfile {directory / 'sentinel.log'}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 10000\n")
            self.sentinels.append(subprocess.Popen(
                [self.binary, str(conf)], cwd=directory, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Until every Sentinel knows both replicas and the two other Sentinels (else the
        failover this group exists for could not happen)."""
        deadline = time.monotonic() + READY_WAIT
        state: object = None
        while time.monotonic() < deadline:
            state = [self._view(port) for port in self.ports]
            if all(s is not None and int(s["num-slaves"]) >= len(self.replicas)
                   and int(s["num-other-sentinels"]) >= 2 for s in state):
                return
            time.sleep(0.1)
        pytest.fail(f"the Sentinels did not see the replicas and each other within "
                    f"{READY_WAIT:g}s: {state}")

    def _view(self, port: int) -> dict[str, Any] | None:
        client = redis.Redis(port=port, socket_timeout=2, decode_responses=True)
        try:
            found = client.sentinel_master(SERVICE)
            return found if isinstance(found, dict) else None
        except redis.RedisError:
            return None
        finally:
            client.close()

    def primary_port(self) -> int | None:
        """The primary's port as the first Sentinel that answers names it."""
        for port in self.ports:
            client = redis.Redis(port=port, socket_timeout=2, decode_responses=True)
            try:
                found = client.sentinel_get_master_addr_by_name(SERVICE)
            except redis.RedisError:
                continue
            finally:
                client.close()
            if isinstance(found, (list, tuple)):
                return int(found[1])
        return None

    def stop(self) -> None:
        for process in self.sentinels:
            process.send_signal(signal.SIGTERM)
        for process in self.sentinels:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.sentinels = []
        for replica in self.replicas:
            replica.stop()
        self.primary.stop()


@pytest.fixture
def sentinel_group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A fresh group per test: a test fails its primary over."""
    group = SentinelGroup(tmp_path_factory.mktemp("sentinel"))
    try:
        group.start()
        yield group
    finally:
        group.stop()
