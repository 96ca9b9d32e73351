"""Alerting once per cluster, on a real redis-server and the fake Telegram: two or three
in-process alerting nodes share one Redis; results arrive through `{p}:results` as the
probing side writes them. One FIRING and one RESOLVED per outage, also when the leader dies
mid-outage (without letting go of its lease) or Redis restarts; quorum 2 with one location
failing sends nothing; a silence made on a non-leader mutes; only one bot polls.
Every wait is bounded by the test's deadline."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from alerts.alerting import Alerting
from alerts.bot import OnCallBot
from alerts.builtin import BUILTINS
from alerts.quorum import QuorumEvaluator
from alerts.routing import Router
from alerts.silences import Silence
from alerts.telegram import TelegramSender
from alerts.telegram_receiver import TelegramReceiver
from core.supervisor import Supervisor
from monitor.cluster import AlertingLeader, RedisAlertStore
from monitor.config.alertconfig import RouteConfig
from tests.support.fake_telegram import FakeTelegram, serve_fake_telegram
from tests.support.redis_server import RedisKeyspace, RedisServer, fresh_prefix

LEASE = 3.0  # a loaded CI machine stalls the loop for a second now and then
DOWN = next(r for r in BUILTINS if r.name == "TargetDown")
TARGETS = {"eth": {"type": "http"}}
CHAT = "-100"
pytestmark = pytest.mark.timeout(90)


@dataclass
class Node:
    name: str
    alerting: Alerting
    leader: AlertingLeader
    store: RedisAlertStore
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.leader.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def kill(self) -> None:
        """As `kill -9` leaves things: the lease is not let go, it runs out."""
        async def keep_it() -> None:
            return None
        self.leader.lease.let_go = keep_it  # type: ignore[method-assign]
        await self.stop()


def node(url: str, prefix: str, fake: FakeTelegram, name: str, quorum: int = 1) -> Node:
    supervisor = Supervisor()
    store = RedisAlertStore(url, holder=name, prefix=prefix)
    evaluator = QuorumEvaluator([DOWN], {}, TARGETS, quorum=quorum, windows={"eth": 60.0})
    sender = TelegramSender(fake.token, CHAT, api_url=fake.url)
    receiver = TelegramReceiver("tg", sender)
    router = Router(RouteConfig(receiver="tg", group_wait=0.0, group_interval=1.0))
    alerting = Alerting(evaluator, router, store, {"tg": receiver},
                        spawn=supervisor.supervise)
    bot = OnCallBot("tg", alerting, sender, [CHAT], list(TARGETS), list)
    bots: list[asyncio.Task[None]] = []

    async def on_lead() -> None:
        async def poll() -> None:
            await receiver.ready()
            await bot.run()
        bots.append(supervisor.supervise("bot", poll))

    async def on_stand_by() -> None:
        for task in bots:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        bots.clear()

    leader = AlertingLeader(url, alerting=alerting, store=store, evaluator=evaluator,
                            labels=TARGETS.get, lease=LEASE, registry=CollectorRegistry(),
                            spawn=supervisor.supervise, prefix=prefix, on_lead=on_lead,
                            on_stand_by=on_stand_by)
    alerting.on_not_leader = leader.lost
    return Node(name, alerting, leader, store)


@contextlib.asynccontextmanager
async def cluster(url: str, prefix: str, fake: FakeTelegram, count: int,
                  quorum: int = 1) -> AsyncIterator[list[Node]]:
    nodes = [node(url, prefix, fake, f"node{i}", quorum) for i in range(count)]
    for n in nodes:
        n.start()
    try:
        yield nodes
    finally:
        for n in nodes:
            await n.stop()
            await n.leader.close()
            n.store.close()


async def until(check: Callable[[], bool | Awaitable[bool]]) -> None:
    while True:  # bounded by the test's timeout
        got = check()
        if not isinstance(got, bool):
            got = await got
        if got:
            return
        await asyncio.sleep(0.05)


def result(ok: bool) -> str:
    return json.dumps({"success": ok, "duration_seconds": 0.01,
                       "started_at": datetime.now(UTC).isoformat(),
                       "failure_reason": None if ok else "timeout", "detail": "",
                       "values": {}, "phases": {}, "warnings": []})


def publish(url: str, prefix: str, ok: bool, location: str = "eu", times: int = 1) -> str:
    """XADD as the probing side does; the last entry's id."""
    with redis.Redis.from_url(url, decode_responses=True) as client:
        last = ""
        for _ in range(times):
            last = client.xadd(f"{prefix}:results", {"target": "eth", "location": location,
                                                     "instance": "p1", "result": result(ok)})
        return last


def leader_of(nodes: list[Node]) -> Node | None:
    leading = [n for n in nodes if n.leader.leading]
    assert len(leading) <= 1
    return leading[0] if leading else None


def texts(fake: FakeTelegram) -> list[str]:
    return [s.text.split("\n")[0] for s in fake.sent]


async def caught_up(nodes: list[Node], last: str) -> None:
    await until(lambda: (lead := leader_of(nodes)) is not None and lead.store.cursor == last)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with serve_fake_telegram() as f:
        yield f


async def outage(url: str, prefix: str, nodes: list[Node], fake: FakeTelegram,
                 between: Callable[[], Awaitable[None]] | None = None) -> None:
    await until(lambda: leader_of(nodes) is not None)
    publish(url, prefix, False, times=3)
    await until(lambda: len(fake.sent) >= 1)  # a duplicate fails the counts, not a hang
    if between is not None:
        await between()
    await until(lambda: leader_of(nodes) is not None)
    publish(url, prefix, True, times=2)
    await until(lambda: len(fake.sent) >= 2)
    await until(lambda: all(
        h["status"] == "sent" for h in nodes[0].store.history()))


async def test_an_outage_is_sent_once_and_only_one_bot_polls(
        redis_keyspace: RedisKeyspace, fake: FakeTelegram) -> None:
    url, prefix = redis_keyspace.url, redis_keyspace.prefix
    async with cluster(url, prefix, fake, 3) as nodes:
        await outage(url, prefix, nodes, fake)
        await until(lambda: sum(1 for m, _ in fake.calls if m == "getupdates") >= 1)
        fake.add_command(CHAT, "/alerts")
        await until(lambda: len(fake.sent) >= 3)
    assert len(fake.sent) == 3, texts(fake)
    assert "FIRING" in fake.sent[0].text.upper() and "RESOLVED" in fake.sent[1].text.upper()
    assert fake.conflicts == 0  # one bot polled: no getUpdates cut off by another


async def test_the_leader_killed_mid_outage_repeats_and_loses_nothing(
        redis_keyspace: RedisKeyspace, fake: FakeTelegram) -> None:
    url, prefix = redis_keyspace.url, redis_keyspace.prefix
    async with cluster(url, prefix, fake, 2) as nodes:
        async def kill_the_leader() -> None:
            lead = leader_of(nodes)
            assert lead is not None
            await until(lambda: lead.store.history()[0]["status"] == "sent")
            await lead.kill()
            await until(lambda: (n := leader_of(nodes)) is not None and n is not lead)

        await outage(url, prefix, nodes, fake, kill_the_leader)
        await asyncio.sleep(0)  # nothing more is due; a repeat would be in the outbox
        assert len(nodes[0].store.history()) == 2
    assert len(fake.sent) == 2


async def test_quorum_two_with_one_location_failing_sends_nothing(
        redis_keyspace: RedisKeyspace, fake: FakeTelegram) -> None:
    url, prefix = redis_keyspace.url, redis_keyspace.prefix
    async with cluster(url, prefix, fake, 2, quorum=2) as nodes:
        await until(lambda: leader_of(nodes) is not None)
        publish(url, prefix, True, location="us")
        last = publish(url, prefix, False, location="eu", times=4)
        await caught_up(nodes, last)
        lead = leader_of(nodes)
        assert lead is not None
        await lead.alerting.flush()
        assert lead.alerting.current() == [] and lead.store.history() == []
        publish(url, prefix, False, location="us", times=3)  # now both: it fires
        await until(lambda: len(fake.sent) == 1)
        assert "eu, us" in fake.sent[0].text


async def test_a_silence_made_on_a_non_leader_mutes(
        redis_keyspace: RedisKeyspace, fake: FakeTelegram) -> None:
    url, prefix = redis_keyspace.url, redis_keyspace.prefix
    async with cluster(url, prefix, fake, 2) as nodes:
        await until(lambda: leader_of(nodes) is not None)
        other = next(n for n in nodes if not n.leader.leading)
        now = datetime.now(UTC)
        await other.alerting.add_silence(Silence("s1", {"target": "eth"}, now,
                                                 now + timedelta(hours=1)))
        last = publish(url, prefix, False, times=3)
        await caught_up(nodes, last)
        lead = leader_of(nodes)
        assert lead is not None
        await lead.alerting.flush()
        view = await other.alerting.view()  # the non-leader sees the leader's snapshot
        assert [(a.name, muted) for a, _, muted in view] == [("TargetDown",
                                                              "silenced by s1")]
        assert lead.store.history() == [] and fake.sent == []


async def test_redis_restarted_mid_outage_loses_and_repeats_nothing(
        tmp_path: Path, fake: FakeTelegram) -> None:
    server = RedisServer(tmp_path)
    server.start()
    prefix = fresh_prefix()
    try:
        async with cluster(server.url, prefix, fake, 2) as nodes:
            async def restart() -> None:
                await until(lambda: nodes[0].store.history()[0]["status"] == "sent")
                server.stop()
                await asyncio.sleep(LEASE)  # the leader cannot renew: it stands by
                server.start()

            await outage(server.url, prefix, nodes, fake, restart)
        assert len(fake.sent) == 2
    finally:
        server.stop()
