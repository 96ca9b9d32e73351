"""Chain nodes for tests: real ganache processes (session-scoped, shared) and a fake JSON node
server for the chains with no installable build, answering from documented responses.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.net import free_port

ROOT = Path(__file__).resolve().parents[2]
GANACHE = ROOT / "node_modules" / ".bin" / "ganache"
FIXTURES = ROOT / "tests" / "fixtures"
START_WAIT = 30.0  # ganache answers in 2-3 s; a loaded CI machine gets ten times that


def load_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


class FrozenClock:
    """A wall clock that says what the test wants; durations still use the real one. Called,
    it is a `core.clock.Clock`; its `now()` and `monotonic()` make it a probe's clock."""

    def __init__(self, now: datetime) -> None:
        self._now = now

    def __call__(self) -> datetime:
        return self._now

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return time.monotonic()


# --- ganache -------------------------------------------------------------------------------


@dataclass
class GanacheNode:
    url: str
    chain_id: int
    process: subprocess.Popen[bytes]

    async def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        """A call made without the code under test, so a bug there cannot hide here."""
        payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s, \
                s.post(self.url, json=payload) as resp:
            answer = await resp.json()
        assert "result" in answer, f"{method} failed on ganache: {answer}"
        return answer["result"]

    async def head(self) -> int:
        return int(await self.rpc("eth_blockNumber"), 16)

    async def mine(self, blocks: int = 1) -> int:
        if blocks > 0:
            await self.rpc("evm_mine", [{"blocks": blocks}])
        return await self.head()


class GanacheFactory:
    """Starts ganache processes and stops every one of them at the end of the session."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._nodes: list[GanacheNode] = []

    def start(self, count: int = 1, chain_id: int = 1337) -> list[GanacheNode]:
        if not GANACHE.exists():
            pytest.fail(f"ganache is not installed at {GANACHE}: run `npm ci` in {ROOT}")
        launched = [self._launch(chain_id) for _ in range(count)]  # start all, then wait
        for node in launched:
            self._wait(node)
        return launched

    def _launch(self, chain_id: int) -> GanacheNode:
        port = free_port()
        log = (self._logs / f"ganache-{port}.log").open("wb")
        args = [str(GANACHE), "--server.host", "127.0.0.1", "--server.port", str(port),
                "--chain.chainId", str(chain_id), "--wallet.deterministic",
                "--logging.quiet", "--server.ws", "false"]
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        node = GanacheNode(f"http://127.0.0.1:{port}", chain_id, process)
        self._nodes.append(node)
        return node

    def _wait(self, node: GanacheNode) -> None:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber",
                           "params": []}).encode()
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            if node.process.poll() is not None:
                pytest.fail(f"ganache exited with {node.process.returncode}; see {self._logs}")
            request = urllib.request.Request(
                node.url, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=1) as resp:
                    if "result" in json.loads(resp.read()):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail(f"ganache at {node.url} did not answer within {START_WAIT:g}s")

    def stop_all(self) -> None:
        for node in self._nodes:
            node.process.terminate()
        for node in self._nodes:
            try:
                node.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()


@pytest.fixture(scope="session")
def ganache_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GanacheFactory]:
    factory = GanacheFactory(tmp_path_factory.mktemp("ganache"))
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def ganache_pair(ganache_factory: GanacheFactory) -> tuple[GanacheNode, GanacheNode]:
    """Two independent nodes (chain id 1337), started together. Shared by the session:
    tests must not assume absolute block numbers, only differences they create."""
    first, second = ganache_factory.start(count=2)
    return first, second


@pytest.fixture(scope="session")
def ganache(ganache_pair: tuple[GanacheNode, GanacheNode]) -> GanacheNode:
    return ganache_pair[0]


# --- fake node server ----------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One request the fake received."""

    path: str
    headers: Mapping[str, str]
    body: Any  # decoded JSON, or None for an empty or non-JSON body


@dataclass(frozen=True)
class Canned:
    body: bytes
    status: int = 200
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


def json_answer(obj: Any, status: int = 200) -> Canned:
    return Canned(json.dumps(obj).encode(), status)


def text_answer(text: str, status: int = 200, content_type: str = "text/html") -> Canned:
    return Canned(text.encode(), status, content_type)


Handler = Callable[[Seen], Awaitable[Canned]]
HANG = "hang"  # an answer that never comes


class FakeNode:
    """An HTTP server on a free loopback port; each path answers what the test set last."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[Seen] = []
        self._answers: dict[str, Canned | Handler | str] = {}
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def answer(self, path: str, answer: Canned | Handler | str) -> None:
        self._answers[path] = answer

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        seen = Seen(request.path, dict(request.headers), body)
        self.requests.append(seen)
        answer = self._answers.get(request.path)
        if answer is None:
            return web.Response(status=404, text="no answer set for this path")
        if answer == HANG:
            await self._release.wait()  # released at teardown so the server can stop
            return web.Response(status=504)
        canned = await answer(seen) if callable(answer) else answer
        assert isinstance(canned, Canned)
        return web.Response(body=canned.body, status=canned.status,
                            content_type=canned.content_type, headers=canned.headers)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def fake_nodes() -> AsyncIterator[Callable[[], Awaitable[FakeNode]]]:
    """A factory of fake node servers, all stopped when the test ends."""
    started: list[FakeNode] = []

    async def start() -> FakeNode:
        node = FakeNode()
        await node.start()
        started.append(node)
        return node

    yield start
    for node in started:
        await node.stop()


@pytest.fixture
async def fake_node(fake_nodes: Callable[[], Awaitable[FakeNode]]) -> FakeNode:
    return await fake_nodes()


@pytest.fixture
async def rpc_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
