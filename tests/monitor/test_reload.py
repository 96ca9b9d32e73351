"""Config reload in process (SIGHUP and `POST /-/reload` both call `Runtime.reload_file`):
targets added, removed and changed while unchanged ones keep their job, state and schedule;
alert states of remaining rules kept; an invalid config changes nothing; keys rotate on both
APIs without a restart; keys that need a restart are named and left alone."""

from __future__ import annotations

import asyncio
import logging
import time
import tomllib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from alerts.store import AlertStore
from monitor.app import Runtime
from monitor.config import load
from tests.support.fake_telegram import FakeTelegram
from tests.support.net import free_port
from tests.support.web import serve

INTERVAL = 1.0


class Site:
    """A local HTTP server that notes when each path was asked for."""

    def __init__(self) -> None:
        self.host = ""
        self.hits: dict[str, list[float]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.setdefault(request.path, []).append(time.monotonic())
        return web.Response(status=503 if request.path == "/broken" else 200, text="ok")

    def count(self, path: str) -> int:
        return len(self.hits.get(path, []))


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    s = Site()
    app = web.Application()
    app.router.add_get("/{path:.*}", s.handle)
    async with serve(app) as base:
        s.host = base.removeprefix("http://")
        yield s


def target(name: str, site: Site, path: str, interval: str = "1s") -> str:
    return (f'[[targets]]\nname = "{name}"\ntype = "http"\n'
            f'url = "http://{site.host}{path}"\ninterval = "{interval}"\ntimeout = "1s"\n')


class Setup:
    """A config file and the monitor running it; `write()` then `reload()` changes it."""

    def __init__(self, tmp_path: Path, monitor_key: str = "mon-key",
                 service_key: str = "svc-key") -> None:
        self.path = tmp_path / "config.toml"
        self.data = tmp_path / "data"
        self.listen = f"127.0.0.1:{free_port()}"
        self.service_listen = f"127.0.0.1:{free_port()}"
        self.base = f"http://{self.listen}"

    def head(self, monitor_keys: str = '["mon-key"]', service_keys: str = '["svc-key"]',
             service: bool = False, listen: str = "", retry: str = "") -> str:
        text = (f'[monitor]\nlisten = "{listen or self.listen}"\ndata_dir = "{self.data}"\n'
                f"api_keys = {monitor_keys}\n"
                f'[service]\nenabled = {str(service).lower()}\n'
                f'listen = "{self.service_listen}"\napi_keys = {service_keys}\n')
        return text + (f"retry_schedule = {retry}\n" if retry else "")

    def write(self, text: str) -> None:
        self.path.write_text(text)


async def wait_until(condition: object, seconds: float = 20) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def reload_via_api(http: aiohttp.ClientSession, base: str,
                         key: str = "mon-key") -> tuple[int, dict[str, object]]:
    async with http.post(f"{base}/-/reload",
                         headers={"Authorization": f"Bearer {key}"}) as resp:
        return resp.status, await resp.json()


async def metrics(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}/metrics") as resp:
        return await resp.text()


async def test_targets_added_removed_changed_and_unchanged_keep_their_schedule(
        tmp_path: Path, site: Site) -> None:
    s = Setup(tmp_path)
    s.write(s.head() + target("keep", site, "/keep") + target("gone", site, "/gone")
            + target("change", site, "/change"))
    runtime = Runtime(load(s.path), env={})
    await runtime.start()
    try:
        await wait_until(lambda: site.count("/keep") >= 2 and site.count("/gone") >= 1
                         and site.count("/change") >= 1)
        keep = runtime._by_name["keep"]
        (keep_job,) = [j for j in runtime._started.scheduler.jobs  # type: ignore[union-attr]
                       if j.state is keep]
        start = keep_job.start
        s.write(s.head() + target("keep", site, "/keep") + target("change", site, "/changed")
                + target("new", site, "/new", "2s"))
        async with aiohttp.ClientSession() as http:
            status, body = await reload_via_api(http, s.base)
            assert (status, body) == (200, {"status": "applied", "targets": 3})
            gone_at_reload = site.count("/gone")
            keep_at_reload = site.count("/keep")
            await wait_until(lambda: site.count("/new") >= 1 and site.count("/changed") >= 1
                             and site.count("/keep") >= keep_at_reload + 4)
            async with http.get(f"{s.base}/api/v1/targets") as resp:
                listed = {t["name"]: t for t in await resp.json()}
            text = await metrics(http, s.base)
    finally:
        await runtime.stop()
    assert set(listed) == {"keep", "change", "new"}
    assert listed["change"]["url"].endswith("/changed")
    assert listed["new"]["interval_seconds"] == 2.0
    # unchanged: the very same state (counts go on) and job (the same schedule)
    assert runtime._by_name["keep"] is keep
    assert keep_job.start == start and not keep_job.retired
    assert listed["keep"]["probes"]["success"] >= keep_at_reload + 4
    # no gap and no double probe across the reload: as many probes as the interval allows
    hits = site.hits["/keep"]
    expected = round((hits[-1] - hits[0]) / INTERVAL) + 1
    assert abs(len(hits) - expected) <= 1, (len(hits), expected)
    # removed: no longer probed (a run in flight at the reload was cancelled) nor exported
    assert site.count("/gone") <= gone_at_reload + 1
    assert 'target="gone"' not in text
    assert 'probe_success{target="new",type="http"} 1.0' in text
    assert 'probe_success{target="change",type="http"} 1.0' in text
    assert "crypitor_config_last_reload_successful 1.0" in text


RULES = """
[[alerts.rules]]
name = "SiteBroken"
match = { target = "broken" }
condition = "status_code >= 500"
[[alerts.rules]]
name = "SiteSlow"
match = { target = "broken" }
condition = "status_code >= 500"
"""


async def test_alert_state_of_a_remaining_rule_is_kept(tmp_path: Path, site: Site) -> None:
    s = Setup(tmp_path)
    s.write(s.head() + target("broken", site, "/broken") + RULES)
    runtime = Runtime(load(s.path), env={})
    await runtime.start()
    try:
        alerting = runtime._started.alerting.alerting  # type: ignore[union-attr]

        def firing() -> dict[str, object]:
            return {a.name: a.starts_at for a, phase, _ in alerting.current()
                    if phase == "firing"}

        await wait_until(lambda: {"SiteBroken", "SiteSlow"} <= firing().keys())
        since = firing()["SiteBroken"]
        # SiteSlow goes, SiteNew comes, SiteBroken stays as it is
        assert all(why is None for _, _, why in alerting.current())
        window = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
        s.write(s.head() + target("broken", site, "/broken")
                + RULES.replace("SiteSlow", "SiteNew")
                + f'[[alerts.maintenance]]\nname = "works"\nstart = "{window}"\n'
                  'duration = "3h"\nmatch = { target = "broken" }\n')
        assert await runtime.reload_file() == []
        now = firing()
        assert now.get("SiteBroken") == since  # the same state, not a new one
        # the maintenance window the reload brought mutes it
        assert all(why is not None for _, _, why in alerting.current()), alerting.current()
        assert "SiteSlow" not in now
        assert "SiteNew" in {r.name for r in alerting.evaluator.rules}
        probes = site.count("/broken")
        await wait_until(lambda: site.count("/broken") >= probes + 2
                         and "SiteNew" in firing())
        assert firing()["SiteBroken"] == since
    finally:
        await runtime.stop()
    # the store no longer holds the removed rule's state
    kept = AlertStore(s.data / "alerts.sqlite3")
    try:
        assert {rule for rule, _ in kept.load_states()} >= {"SiteBroken", "SiteNew"}
        assert all(rule != "SiteSlow" for rule, _ in kept.load_states())
    finally:
        kept.close()


async def test_an_invalid_config_changes_nothing(tmp_path: Path, site: Site,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    s = Setup(tmp_path)
    s.write(s.head() + target("keep", site, "/keep"))
    runtime = Runtime(load(s.path), env={})
    await runtime.start()
    try:
        async with aiohttp.ClientSession() as http:
            text = await metrics(http, s.base)
            assert "crypitor_config_last_reload_successful 1.0" in text
            assert "crypitor_config_last_reload_success_timestamp_seconds 1." in text
            s.write(s.head() + target("keep", site, "/keep", "fast")
                    + target("other", site, "/other") + "[monitor.nope]\n")
            async with http.post(f"{s.base}/-/reload") as resp:
                assert resp.status == 401  # the monitor's API key, as every POST
            with caplog.at_level(logging.ERROR):
                status, body = await reload_via_api(http, s.base)
            text = await metrics(http, s.base)
            async with http.get(f"{s.base}/api/v1/targets") as resp:
                names = [t["name"] for t in await resp.json()]
    finally:
        await runtime.stop()
    assert status == 422
    assert body["field"] == "config" and isinstance(body["error"], str)
    errors = body["errors"]
    assert isinstance(errors, list)
    assert any(e.startswith("targets[0].interval") and '"fast"' in e for e in errors), errors
    assert len(errors) >= 2, errors  # every error, not the first one
    for e in errors:
        assert e in caplog.text
    assert "crypitor_config_last_reload_successful 0.0" in text
    assert names == ["keep"]
    assert runtime.config.targets[0].interval == 1.0


async def test_keys_rotate_on_both_apis_and_restart_keys_are_named(
        tmp_path: Path, site: Site, caplog: pytest.LogCaptureFixture) -> None:
    s = Setup(tmp_path)
    s.write(s.head(service=True) + target("keep", site, "/keep"))
    env = {"NEW_MONITOR_KEY": "mon-key-2"}
    runtime = Runtime(load(s.path), env=env)
    await runtime.start()
    service = f"http://{s.service_listen}"

    async def status(http: aiohttp.ClientSession, method: str, url: str, key: str) -> int:
        async with http.request(method, url, headers={"Authorization": f"Bearer {key}"}) as r:
            await r.read()
            return r.status

    try:
        # one connection per server throughout: the rotation drops none
        opened: list[object] = []
        trace = aiohttp.TraceConfig()

        async def created(*_args: object) -> None:
            opened.append(_args)

        trace.on_connection_create_end.append(created)
        connector = aiohttp.TCPConnector(limit_per_host=1)
        async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as http:
            assert await status(http, "GET", f"{service}/v1/endpoints", "svc-key") == 200
            s.write(s.head(monitor_keys='["env:NEW_MONITOR_KEY"]',
                           service_keys='["svc-key-2"]', service=True,
                           listen=f"127.0.0.1:{free_port()}", retry='["1s"]')
                    + target("keep", site, "/keep"))
            with caplog.at_level(logging.WARNING):
                code, body = await reload_via_api(http, s.base)
            assert (code, body["status"]) == (200, "applied")
            assert await status(http, "POST", f"{s.base}/-/reload", "mon-key") == 401
            assert await status(http, "POST", f"{s.base}/-/reload", "mon-key-2") == 200
            assert await status(http, "GET", f"{service}/v1/endpoints", "svc-key") == 401
            assert await status(http, "GET", f"{service}/v1/endpoints", "svc-key-2") == 200
            assert len(opened) == 2  # the monitor's and the service's, each kept alive
    finally:
        await runtime.stop()
    # the listener did not move (it still answered above); both keys that need it were named
    assert "monitor.listen changed; it takes effect at the next restart" in caplog.text
    assert "service.retry_schedule changed; it takes effect at the next restart" \
        in caplog.text
    assert runtime.config.monitor.listen == s.listen


async def test_an_unset_variable_refuses_the_reload(tmp_path: Path, site: Site) -> None:
    s = Setup(tmp_path)
    s.write(s.head() + target("keep", site, "/keep"))
    runtime = Runtime(load(s.path), env={})
    await runtime.start()
    try:
        s.write(s.head(monitor_keys='["env:UNSET_KEY"]') + target("keep", site, "/keep")
                + target("more", site, "/more"))
        errors = await runtime.reload_file()
        assert len(errors) == 1 and "UNSET_KEY" in errors[0] and \
            "monitor.api_keys[0]" in errors[0]
        assert [st.name for st in runtime.states] == ["keep"]
        assert runtime.registry.get_sample_value(
            "crypitor_config_last_reload_successful") == 0.0
    finally:
        await runtime.stop()


def test_keys_that_need_a_restart_are_named(tmp_path: Path) -> None:
    from monitor.config import parse
    from monitor.reload import effective, needs_restart

    base = '[monitor]\nlisten = "127.0.0.1:9300"\n[service]\nqueue = "sqlite"\n'
    running = parse(tomllib.loads(base), tmp_path / "config.toml")
    new = parse(tomllib.loads(
        base.replace("9300", "9301").replace('"sqlite"', '"redis://127.0.0.1:6379/0"')
        + 'api_keys = ["k"]\nallowed_networks = ["10.0.0.0/8"]\n'
        + '[[targets]]\nname = "c"\ntype = "webhook_canary"\nurl = "http://127.0.0.1:1"\n'),
        tmp_path / "config.toml")
    assert needs_restart(running, new) == ["monitor.listen", "service.queue",
                                           "targets[0] (the first webhook_canary)"]
    runs = effective(running, new)
    assert runs.monitor.listen == "127.0.0.1:9300" and runs.service.queue == "sqlite"
    assert runs.service.api_keys == ("k",)
    assert runs.service.allowed_networks == ("10.0.0.0/8",)
    assert runs.targets == new.targets


def receivers(fake: FakeTelegram, names: dict[str, str], route_to: str) -> str:
    text = (f'[alerts.route]\nreceiver = "{route_to}"\ngroup_wait = "0s"\n'
            'group_interval = "1s"\n')
    for name, chat in names.items():
        text += (f'[[alerts.receivers]]\nname = "{name}"\nbot_token = "env:BOT_TOKEN"\n'
                 f'chat_id = "{chat}"\napi_url = "{fake.url}"\n')
    return text


async def test_receivers_and_routes_change_and_an_unchanged_receiver_is_kept(
        tmp_path: Path, site: Site, fake_telegram: FakeTelegram) -> None:
    s = Setup(tmp_path)
    rule = ('[[alerts.rules]]\nname = "{name}"\nmatch = {{ target = "broken" }}\n'
            'condition = "status_code >= 500"\n')
    s.write(s.head() + target("broken", site, "/broken") + rule.format(name="SiteBroken")
            + receivers(fake_telegram, {"first": "-100"}, "first"))
    runtime = Runtime(load(s.path), env={"BOT_TOKEN": fake_telegram.token})
    await runtime.start()

    def sent(chat: str, words: str) -> bool:
        return any(m.chat_id == chat and words in m.text for m in fake_telegram.sent)

    try:
        await wait_until(lambda: sent("-100", "SiteBroken"))
        alerting = runtime._started.alerting  # type: ignore[union-attr]
        first = alerting.receivers["first"]
        s.write(s.head() + target("broken", site, "/broken") + rule.format(name="SiteBroken")
                + rule.format(name="SiteNew")
                + receivers(fake_telegram, {"first": "-100", "second": "-200"}, "second"))
        assert await runtime.reload_file() == []
        assert alerting.receivers["first"] is first  # its sender and bot go on
        await wait_until(lambda: sent("-200", "SiteNew"))
        # a rule that goes while firing: its alert is resolved, and said so
        s.write(s.head() + target("broken", site, "/broken") + rule.format(name="SiteBroken")
                + receivers(fake_telegram, {"first": "-100", "second": "-200"}, "second"))
        assert await runtime.reload_file() == []
        await wait_until(lambda: any(m.chat_id == "-200" and "SiteNew" in m.text
                                     and "RESOLVED" in m.text for m in fake_telegram.sent))
    finally:
        await runtime.stop()
    assert not sent("-100", "SiteNew")  # the new route sends it to the new receiver only
    assert not sent("-200", "SiteBroken")  # already notified: not sent again


async def test_allowed_networks_rotate_on_the_embedded_service(tmp_path: Path,
                                                               site: Site) -> None:
    s = Setup(tmp_path)
    s.write(s.head(service=True) + target("keep", site, "/keep"))
    runtime = Runtime(load(s.path), env={})
    await runtime.start()
    endpoints = f"http://{s.service_listen}/v1/endpoints"
    auth = {"Authorization": "Bearer svc-key"}
    body = {"url": f"http://{site.host}/hook"}  # on loopback: private, refused by default
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(endpoints, json=body, headers=auth) as resp:
                assert resp.status == 422, await resp.text()
            s.write(s.head(service=True).replace(
                "api_keys = [\"svc-key\"]\n",
                "api_keys = [\"svc-key\"]\nallowed_networks = [\"127.0.0.0/8\"]\n")
                + target("keep", site, "/keep"))
            assert await runtime.reload_file() == []
            async with http.post(endpoints, json=body, headers=auth) as resp:
                assert resp.status == 201, await resp.text()
    finally:
        await runtime.stop()
