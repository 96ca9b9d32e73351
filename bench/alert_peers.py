"""What the alert-latency benchmark (`bench.alerting`) runs, all on loopback: targets that can
be switched to answer 500 on every path, the fake Telegram Bot API of the tests stamping each
accepted message with its arrival time, a webhook sink for Alertmanager doing the same, and
the processes watching the targets (`crypitor run`, prometheus, prometheus-alertmanager).
Each is bounded in time and stopped by the context that started it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from bench.procs import ROOT, need, stop, wait_http
from tests.support.fake_telegram import FakeTelegram, Sent, serve_fake_telegram
from tests.support.net import free_port

Handler = Callable[[web.Request], Awaitable[web.Response]]
METRICS = "# HELP bench_target_ready A trivial gauge.\n# TYPE bench_target_ready gauge\n" \
          "bench_target_ready 1\n"


# --- the servers ---------------------------------------------------------------------------
class Target:
    """`/` answers 200 and `/metrics` a gauge while up; every path answers 500 while down, so
    both a probe and a Prometheus scrape fail."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.down = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        if self.down:
            return web.Response(status=500, text="down\n")
        if request.path == "/metrics":
            return web.Response(text=METRICS, headers={
                "Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
        return web.Response(text="ok\n")


@dataclass(frozen=True)
class Message:
    """A sendMessage the fake Telegram accepted, with its arrival (time.monotonic())."""

    at: float
    text: str


class _Stamped(list[Sent]):
    """Stands in for `FakeTelegram.sent`: the fake appends each message it accepts, right
    when the request is answered, so the stamp is the arrival time."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[Message] = []

    def append(self, sent: Sent, /) -> None:
        self.messages.append(Message(time.monotonic(), sent.text))
        super().append(sent)


@dataclass(frozen=True)
class HookAlert:
    instance: str
    status: str  # firing | resolved
    starts_at: str  # RFC 3339, when Prometheus fired it
    at: float  # arrival of the webhook that carried it (time.monotonic())


class Sink:
    """Alertmanager's webhook receiver: records every alert of every POST with its arrival."""

    def __init__(self) -> None:
        self.port = 0
        self.alerts: list[HookAlert] = []

    async def handle(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        body: dict[str, Any] = await request.json()
        for alert in body.get("alerts", []):
            self.alerts.append(HookAlert(alert.get("labels", {}).get("instance", ""),
                                         alert.get("status", ""), alert.get("startsAt", ""),
                                         at))
        return web.Response(text="ok\n")


@dataclass(frozen=True)
class Peers:
    targets: Sequence[Target]
    telegram: FakeTelegram
    messages: Sequence[Message]  # every sendMessage, in arrival order
    sink: Sink


@contextlib.asynccontextmanager
async def _serve(handler: Handler) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def peers(names: Sequence[str]) -> AsyncIterator[Peers]:
    """One target per name, the fake Telegram and the sink, served on the running loop."""
    async with contextlib.AsyncExitStack() as stack:
        fake = await stack.enter_async_context(serve_fake_telegram())
        stamped = _Stamped()
        fake.sent = stamped
        targets = [Target(n) for n in names]
        for target in targets:
            target.port = await stack.enter_async_context(_serve(target.handle))
        sink = Sink()
        sink.port = await stack.enter_async_context(_serve(sink.handle))
        yield Peers(targets, fake, stamped.messages, sink)


# --- the processes -------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def _process(argv: Sequence[str], ready_url: str, log: Path,
                   env: Mapping[str, str] | None = None) -> AsyncIterator[None]:
    """`argv` with its output in `log`, until `ready_url` answers (at most 60 s)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                env=None if env is None else {**os.environ, **env})
        try:
            try:
                await asyncio.to_thread(wait_http, ready_url, 60)
            except RuntimeError as exc:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                raise RuntimeError(f"{exc}; {argv[0]} said:\n{tail}") from None
            yield
        finally:
            await asyncio.to_thread(stop, proc)


@contextlib.asynccontextmanager
async def alertmanager(sink_url: str) -> AsyncIterator[int]:
    """Alertmanager with its defaults (group_wait 30 s, group_interval 5 m, repeat 4 h), one
    webhook receiver, alerts grouped per alertname and instance; no clustering."""
    binary = need("prometheus-alertmanager", "prometheus-alertmanager")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-am-") as tmp:
        conf = Path(tmp) / "alertmanager.yml"
        conf.write_text(yaml.safe_dump({
            "route": {"receiver": "sink", "group_by": ["alertname", "instance"]},
            "receivers": [{"name": "sink", "webhook_configs": [{"url": sink_url}]}],
        }, sort_keys=False))
        async with _process([binary, f"--config.file={conf}", f"--storage.path={tmp}/data",
                             f"--web.listen-address=127.0.0.1:{port}",
                             "--cluster.listen-address=", "--log.level=warn"],
                            f"http://127.0.0.1:{port}/-/ready", Path(tmp) / "am.log"):
            yield port


@contextlib.asynccontextmanager
async def prometheus(targets: Sequence[str], am_port: int, hold: str) -> AsyncIterator[int]:
    """Prometheus with its default intervals (no `global` section: scrape and evaluation
    every 1 m), one job `target` scraping `targets`, the rule `up{job="target"} == 0` held
    for `hold`, and alerts sent to the Alertmanager on `am_port`."""
    binary = need("prometheus", "prometheus")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-prom-") as tmp:
        rules = Path(tmp) / "rules.yml"
        rules.write_text(yaml.safe_dump({"groups": [{"name": "bench", "rules": [
            {"alert": "TargetDown", "expr": 'up{job="target"} == 0', "for": hold}]}]},
            sort_keys=False))
        conf = Path(tmp) / "prometheus.yml"
        conf.write_text(yaml.safe_dump({
            "rule_files": [str(rules)],
            "alerting": {"alertmanagers": [
                {"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
            "scrape_configs": [
                {"job_name": "target", "static_configs": [{"targets": list(targets)}]}],
        }, sort_keys=False))
        async with _process([binary, f"--config.file={conf}",
                             f"--storage.tsdb.path={tmp}/data",
                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                            f"http://127.0.0.1:{port}/-/ready", Path(tmp) / "prom.log"):
            yield port


@contextlib.asynccontextmanager
async def crypitor(targets: Sequence[Target], telegram: FakeTelegram,
                   interval: str) -> AsyncIterator[int]:
    """`crypitor run`: one http target per `targets`, probed every `interval`, the built-in
    rules, one Telegram receiver on the fake API and the default route."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-alerting-") as tmp:
        listed = "".join(f'[[targets]]\nname = "{t.name}"\ntype = "http"\n'
                         f'url = "http://{t.address}/"\n' for t in targets)
        conf = Path(tmp) / "config.toml"
        conf.write_text(
            f'[monitor]\nlisten = "127.0.0.1:{port}"\ndata_dir = "{tmp}/data"\n'
            f'default_interval = "{interval}"\n[service]\nenabled = false\n{listed}'
            f'[[alerts.receivers]]\nname = "oncall"\ntype = "telegram"\n'
            f'api_url = "{telegram.url}"\nbot_token = "env:BENCH_BOT_TOKEN"\n'
            f'chat_id = "-1001234567890"\n')
        async with _process([str(ROOT / ".venv/bin/crypitor"), "run", "-c", str(conf),
                             "--log-level", "warning"],
                            f"http://127.0.0.1:{port}/healthz", Path(tmp) / "crypitor.log",
                            env={"BENCH_BOT_TOKEN": telegram.token}):
            yield port
