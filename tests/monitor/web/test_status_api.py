"""The status page's API on a real monitor: `/api/v1/status` in the contract's shape, grouped by
`group_by`, with history, incidents (an alert that fired and resolved, a maintenance window,
alerts received from Alertmanager) and SLOs; the badges; the Atom feed; public mode leaking no
URL, address or failure detail anywhere; the second listener serving only those paths;
`[status_page]` applied on reload."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.config import ConfigError, parse
from monitor.web.statuspage import CSP
from tests.monitor.web.status_support import KEY, SECRET, fetch, running, until

pytestmark = pytest.mark.timeout(90)
ATOM = "{http://www.w3.org/2005/Atom}"


async def status(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    code, _, body = await fetch(http, f"{base}/api/v1/status")
    assert code == 200
    return dict(json.loads(body))


def targets(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for g in data["groups"] for t in g["targets"]}


async def test_status_data_incidents_badges_and_feed(tmp_path: Path) -> None:
    async with running(tmp_path) as m, aiohttp.ClientSession() as http:
        m.runtime.slo_status = lambda: [{"name": "eth-main availability", "objective": 0.999,
                                         "window": "30d", "attained": 0.9995,
                                         "error_budget_remaining": 0.5}]
        m.flaky.status = 503

        async def fired() -> bool:
            return any(i["status"] == "firing" and i["alertname"] == "TargetDown"
                       and i["target"] == "eth-main"
                       for i in (await status(http, m.main))["incidents"])
        await until(fired)
        m.flaky.status = 200

        async def resolved() -> bool:
            return any(i["status"] == "resolved" and i["target"] == "eth-main"
                       for i in (await status(http, m.main))["incidents"])
        await until(resolved)
        data = await status(http, m.main)
        code, headers, page = await fetch(http, f"{m.main}/")
        _, feed_headers, feed = await fetch(http, f"{m.main}/feed.atom")
        badge = await fetch(http, f"{m.main}/api/v1/targets/web/badge.svg")
        uptime = await fetch(http, f"{m.main}/api/v1/targets/web/uptime/24h/badge.svg")
        missing = await fetch(http, f"{m.main}/api/v1/targets/nope/badge.svg")
        bad_window = await fetch(http, f"{m.main}/api/v1/targets/web/uptime/1y/badge.svg")

    assert set(data) >= {"title", "updated", "groups", "incidents", "slos"}
    assert data["title"] == "Crypitor status"
    assert [g["name"] for g in data["groups"]] == ["chain", "web", ""]  # by team, config order
    by_name = targets(data)
    web, eth = by_name["web"], by_name["eth-main"]
    assert web["state"] == "up" and web["maintenance"] is True
    assert by_name["lonely"]["state"] == "down"
    assert by_name["lonely"]["failure"]["reason"] == "refused"  # not public: details shown
    assert eth["url"].startswith("http://127.0.0.1")
    assert set(web["uptime"]) == {"24h", "7d", "30d"} and web["uptime"]["24h"] == 1.0
    assert web["latency_ms"] is not None and web["latency_ms"] > 0
    assert len(web["history"]) == 24 and len(web["daily"]) == 90
    assert web["history"][-1]["uptime"] == 1.0 and web["history"][-1]["latency_ms"] > 0
    assert set(web["history"][0]) == {"start", "uptime", "latency_ms"}
    kinds = {(i["status"], i["title"]) for i in data["incidents"]}
    assert ("maintenance", "web-upgrade") in kinds
    assert ("resolved", "TargetDown on eth-main") in kinds
    incident = next(i for i in data["incidents"] if i["status"] == "resolved")
    assert incident["severity"] == "critical" and "eth-main" in incident["summary"]
    assert incident["started_at"] < incident["resolved_at"]
    assert data["slos"] == [{"name": "eth-main availability", "objective": 0.999,
                             "window": "30d", "attained": 0.9995,
                             "error_budget_remaining": 0.5}]

    assert code == 200 and headers["Content-Security-Policy"] == CSP
    assert "default-src 'none'" in CSP and "script" not in page
    assert '<meta http-equiv="refresh"' in page
    assert "eth-main availability" in page and "web-upgrade" in page

    assert feed_headers["Content-Type"].startswith("application/atom+xml")
    root = ET.fromstring(feed)
    assert root.tag == f"{ATOM}feed"
    for required in ("id", "title", "updated", "author"):
        assert root.find(f"{ATOM}{required}") is not None, required
    entries = root.findall(f"{ATOM}entry")
    titles = [e.findtext(f"{ATOM}title") for e in entries]
    assert "FIRING: TargetDown on eth-main" in titles
    assert "RESOLVED: TargetDown on eth-main" in titles
    assert "MAINTENANCE: web-upgrade" in titles
    ids = [e.findtext(f"{ATOM}id") for e in entries]
    assert len(ids) == len(set(ids))
    for e in entries:
        assert e.findtext(f"{ATOM}updated") and e.find(f"{ATOM}content") is not None

    for code, headers, body in (badge, uptime):
        assert code == 200 and headers["Content-Type"] == "image/svg+xml"
        assert headers["Cache-Control"] == "max-age=60"
        ET.fromstring(body)
    assert ">up<" in badge[2] and ">100.00%<" in uptime[2]
    assert missing[0] == 404 and json.loads(missing[2])["field"] == "name"
    assert bad_window[0] == 404 and json.loads(bad_window[2])["field"] == "window"


def am_alert(name: str, status: str, starts: datetime, ends: str) -> dict[str, Any]:
    """One alert of an Alertmanager webhook payload, its start written in UTC+1."""
    return {"status": status, "labels": {"alertname": name, "instance": "db1:9100",
                                         "severity": "critical"},
            "annotations": {"summary": f"{name} on db1"},
            "startsAt": starts.astimezone(timezone(timedelta(hours=1))).isoformat(),
            "endsAt": ends}


async def test_alerts_from_alertmanager_enter_the_incident_log(tmp_path: Path) -> None:
    """Posted to /api/v1/alertmanager, an alert's firing and its end are logged like our own:
    the status page and the feed show it resolved; its times are UTC; an `endsAt` far in the
    future neither stands as the end nor expires the rest of the log."""
    starts = (datetime.now(UTC) - timedelta(minutes=10)).replace(microsecond=0)
    ends = starts + timedelta(minutes=5)
    async with running(tmp_path) as m, aiohttp.ClientSession() as http:
        async def post(*alerts: dict[str, Any]) -> None:
            async with http.post(f"{m.main}/api/v1/alertmanager",
                                 json={"version": "4", "alerts": list(alerts)},
                                 headers={"Authorization": f"Bearer {KEY}"}) as resp:
                assert resp.status == 200, await resp.text()

        async def incidents(name: str) -> list[dict[str, Any]]:
            return [i for i in (await status(http, m.main))["incidents"]
                    if i["alertname"] == name]

        async def shown(name: str, state: str) -> bool:
            return [i["status"] for i in await incidents(name)] == [state]

        await post(am_alert("DiskFull", "firing", starts, "0001-01-01T00:00:00Z"))
        await until(lambda: shown("DiskFull", "firing"))
        (firing,) = await incidents("DiskFull")
        await post(am_alert("DiskFull", "resolved", starts, ends.isoformat()))
        await until(lambda: shown("DiskFull", "resolved"))
        await post(am_alert("CertExpired", "firing", starts, "0001-01-01T00:00:00Z"))
        await post(am_alert("CertExpired", "resolved", starts, "9999-12-31T23:59:59Z"))
        await until(lambda: shown("CertExpired", "resolved"))
        (disk,) = await incidents("DiskFull")
        (cert,) = await incidents("CertExpired")
        _, _, page = await fetch(http, f"{m.main}/")
        _, _, feed = await fetch(http, f"{m.main}/feed.atom")
        _, _, public = await fetch(http, f"{m.public}/api/v1/status")
    assert firing["status"] == "firing"
    assert (disk["title"], disk["severity"], disk["summary"]) == (
        "DiskFull", "critical", "DiskFull on db1")
    assert disk["started_at"] == starts.isoformat() == firing["started_at"]
    assert disk["resolved_at"] == ends.isoformat()
    assert cert["started_at"] == starts.isoformat()
    assert starts.isoformat() < cert["resolved_at"] < "9999"
    assert "DiskFull" in page and "CertExpired" in page
    titles = [e.findtext(f"{ATOM}title") for e in ET.fromstring(feed).findall(f"{ATOM}entry")]
    assert "RESOLVED: DiskFull" in titles and "RESOLVED: CertExpired" in titles
    assert {i["alertname"] for i in json.loads(public)["incidents"]} >= {"DiskFull",
                                                                         "CertExpired"}


# the flaky target's failure shows as "status 503, expected 2xx" or "HTTP 503"; a bare "503"
# could be any number of the page (a latency, an uptime)
LEAKS = ("127.0.0.1", SECRET, "/flaky", "refused", "expected 2xx", "status 503", "HTTP 503",
         ">503<", "tcp://")


async def test_public_mode_leaks_no_url_address_or_detail(tmp_path: Path) -> None:
    async with running(tmp_path, "public = true") as m, aiohttp.ClientSession() as http:
        m.flaky.status = 503

        async def fired() -> bool:
            return any(i["status"] == "firing"
                       for i in (await status(http, m.public))["incidents"])
        await until(fired)
        bodies = {}
        for path in ("/", "/api/v1/status", "/feed.atom",
                     *(f"/api/v1/targets/{n}/badge.svg" for n in ("eth-main", "web", "lonely")),
                     *(f"/api/v1/targets/{n}/uptime/{w}/badge.svg"
                       for n in ("eth-main", "lonely") for w in ("24h", "7d", "30d"))):
            for base in (m.public, m.main):
                code, _, body = await fetch(http, base + path)
                assert code == 200, path
                bodies[base + path] = body
        data = await status(http, m.public)
    for where, body in bodies.items():  # no host of ours either: the feed's links are relative
        for leak in (*LEAKS, str(m.closed_port)):
            assert leak not in body, (where, leak)
    eth = targets(data)["eth-main"]
    assert eth["state"] == "down" and "url" not in eth and "failure" not in eth
    assert all("summary" not in i for i in data["incidents"])
    assert data["public"] is True and "/metrics" not in bodies[m.public + "/"]


async def test_the_second_listener_serves_only_the_status_paths(tmp_path: Path) -> None:
    async with running(tmp_path) as m, aiohttp.ClientSession() as http:
        for path in ("/metrics", "/healthz", "/readyz", "/openapi.json", "/api/v1/targets",
                     "/api/v1/targets/web", "/api/v1/alerts", "/api/v1/silences",
                     "/api/v1/notifications", "/nope"):
            code, headers, body = await fetch(http, m.public + path)
            assert code == 404, path
            assert json.loads(body)["error"] and headers["Content-Security-Policy"] == CSP
            assert (await fetch(http, m.main + path))[0] in (200, 404, 503)
        code, _, body = await fetch(http, f"{m.public}/-/reload", "POST")
        assert code in (404, 405) and "error" in json.loads(body)
        code, _, _ = await fetch(http, f"{m.public}/", "POST")
        assert code == 405
        for path in ("/", "/api/v1/status", "/feed.atom", "/api/v1/targets/web/badge.svg"):
            assert (await fetch(http, m.public + path))[0] == 200, path


async def test_status_page_changes_apply_on_reload_and_listen_needs_a_restart(
        tmp_path: Path) -> None:
    async with running(tmp_path) as m, aiohttp.ClientSession() as http:
        before = await status(http, m.public)
        assert before["title"] == "Crypitor status" and "url" in targets(before)["web"]
        text = m.path.read_text().replace(
            f'listen = "{m.status_listen}"\n',
            'listen = "127.0.0.1:1"\ntitle = "Acme <status>"\npublic = true\n'
            'group_by = ""\n')
        m.path.write_text(text)
        async with http.post(f"{m.main}/-/reload",
                             headers={"Authorization": f"Bearer {KEY}"}) as resp:
            assert resp.status == 200, await resp.text()
        after = await status(http, m.public)  # the old listener still serves
        _, _, page = await fetch(http, f"{m.public}/")
        assert m.runtime.config.status_page.listen == m.status_listen
    assert after["title"] == "Acme <status>" and after["public"] is True
    assert [g["name"] for g in after["groups"]] == [""]
    assert "url" not in targets(after)["web"]
    assert "<title>Acme &lt;status&gt;</title>" in page


def test_status_page_config_errors_name_the_key_and_value(tmp_path: Path) -> None:
    for section, key, value in (({"listen": "nowhere"}, "status_page.listen", "nowhere"),
                                ({"title": ""}, "status_page.title", '""'),
                                ({"colour": "red"}, "status_page.colour", "unknown key")):
        with pytest.raises(ConfigError) as caught:
            parse({"status_page": section}, tmp_path / "config.toml")
        assert key in str(caught.value) and value in str(caught.value)
    with pytest.raises(ConfigError, match=r"status_page\.listen: must differ"):
        parse({"monitor": {"listen": "127.0.0.1:9300"},
               "status_page": {"listen": "127.0.0.1:9300"}}, tmp_path / "config.toml")
    assert parse({}, tmp_path / "config.toml").status_page.group_by == "team"
