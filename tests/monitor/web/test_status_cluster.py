"""With [cluster], every instance's status page and /api/v1/status show the whole cluster: two
in-process `crypitor run` monitors in two locations on a real redis-server, a target failing
from one location only, seen from the other (with its history counted from both), and the
alerts received from Alertmanager in the cluster's incident log."""

from __future__ import annotations

import contextlib
import json
import tomllib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.app import Runtime
from monitor.config import parse
from tests.monitor.web.status_support import fetch, until
from tests.support.monitor_cluster import serve_targets
from tests.support.net import free_port
from tests.support.redis_server import RedisKeyspace

pytestmark = pytest.mark.timeout(90)


@contextlib.asynccontextmanager
async def instance(tmp_path: Path, space: RedisKeyspace, location: str, target: str,
                   public: bool) -> AsyncIterator[Runtime]:
    text = f"""
[monitor]
listen = "127.0.0.1:{free_port()}"
data_dir = "{tmp_path / location}"
api_keys = ["k"]
[service]
enabled = false
[cluster]
redis = "{space.url}"
location = "{location}"
instance = "{location}-host-1"
lease = "2s"
[status_page]
public = {str(public).lower()}
[[targets]]
name = "node"
type = "http"
url = "{target}"
interval = "200ms"
timeout = "150ms"
"""
    runtime = Runtime(parse(tomllib.loads(text), tmp_path / f"{location}.toml"), env={},
                      cluster_prefix=space.prefix)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def node(http: aiohttp.ClientSession, runtime: Runtime) -> dict[str, Any]:
    _, _, body = await fetch(http, f"http://{runtime.config.monitor.listen}/api/v1/status")
    (group,) = json.loads(body)["groups"]
    return dict(group["targets"][0])


async def test_every_instance_shows_the_whole_cluster(tmp_path: Path,
                                                      redis_keyspace: RedisKeyspace) -> None:
    async with serve_targets() as server, \
            instance(tmp_path, redis_keyspace, "eu", f"{server.url}/t/node", True) as eu, \
            instance(tmp_path, redis_keyspace, "us", f"{server.url}/t/node", False) as us, \
            aiohttp.ClientSession() as http:
        server.fail("node", ["us"])

        async def seen_down_from_us() -> bool:
            t = await node(http, eu)
            return t["state"] == "down" and {(x["name"], x["state"]) for x in
                                             t.get("locations", [])} == {("eu", "up"),
                                                                         ("us", "down")}
        await until(seen_down_from_us)

        async def history_from_both() -> bool:  # us's failures, flushed to Redis
            t = await node(http, eu)
            return 0 < (t["uptime"]["24h"] or 0) < 1 and t["history"][-1]["uptime"] < 1
        await until(history_from_both, 30)
        public, private = await node(http, eu), await node(http, us)
        _, _, page = await fetch(http, f"http://{eu.config.monitor.listen}/")
    assert all("instance" not in x for x in public["locations"])  # a host name: not public
    assert {x["instance"] for x in private["locations"]} == {"eu-host-1", "us-host-1"}
    assert "us: DOWN" in page and "eu: UP" in page and "host-1" not in page


async def test_alertmanager_alerts_enter_the_cluster_incident_log(
        tmp_path: Path, redis_keyspace: RedisKeyspace) -> None:
    """An Alertmanager alert posted to one instance and its end to the other (so one of them
    goes through the queue to the alerting leader): the cluster's incident log in Redis holds
    it resolved, and both instances' status pages show it."""
    starts = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
    ends = starts + timedelta(minutes=5)

    def alert(status: str, ends_at: str) -> dict[str, Any]:
        return {"status": status, "labels": {"alertname": "DiskFull", "severity": "warning"},
                "annotations": {"summary": "db1 disk full"},
                "startsAt": starts.isoformat(), "endsAt": ends_at}

    async with serve_targets() as server, \
            instance(tmp_path, redis_keyspace, "eu", f"{server.url}/t/node", False) as eu, \
            instance(tmp_path, redis_keyspace, "us", f"{server.url}/t/node", False) as us, \
            aiohttp.ClientSession() as http:
        async def post(runtime: Runtime, item: dict[str, Any]) -> None:
            async with http.post(f"http://{runtime.config.monitor.listen}/api/v1/alertmanager",
                                 json={"version": "4", "alerts": [item]},
                                 headers={"Authorization": "Bearer k"}) as resp:
                assert resp.status == 200, await resp.text()

        async def incidents(runtime: Runtime) -> list[dict[str, Any]]:
            _, _, body = await fetch(http,
                                     f"http://{runtime.config.monitor.listen}/api/v1/status")
            return [i for i in json.loads(body)["incidents"] if i["alertname"] == "DiskFull"]

        async def logged_as(state: str) -> bool:
            return [i["status"] for i in await incidents(eu)] == [state]

        await post(eu, alert("firing", "0001-01-01T00:00:00Z"))
        await until(lambda: logged_as("firing"), 30)
        await post(us, alert("resolved", ends.isoformat()))
        await until(lambda: logged_as("resolved"), 30)
        seen = await incidents(eu), await incidents(us)
    for (item,) in seen:
        assert (item["status"], item["started_at"], item["resolved_at"]) == (
            "resolved", starts.isoformat(), ends.isoformat())
        assert item["summary"] == "db1 disk full"
