"""Pushing dashboards to Grafana (a fake of its HTTP API on a real local server): what a push
creates, that pushing again changes nothing, the errors an operator sees, that the token stays
out of them and out of the logs, and the background pusher of `crypitor run`."""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import traceback
from typing import Any

import pytest

from dashboards.grafana import (
    DATASOURCE_UID,
    FOLDER_UID,
    PushReport,
    push,
    same_content,
)
from dashboards.grafana_api import GrafanaError
from dashboards.pusher import GrafanaPusher
from tests.support.fake_grafana import FakeGrafana, serve_fake_grafana
from tests.support.net import free_port

pytestmark = pytest.mark.timeout(30)

PROM = "http://127.0.0.1:9090"
FOLDER = "Crypitor"


def dashboard(uid: str, title: str, *, expr: str = "probe_success") -> dict[str, Any]:
    """A small hand-made dashboard model of the shape dashboards.build makes."""
    return {
        "uid": uid,
        "title": title,
        "tags": ["crypitor"],
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{"name": "datasource", "type": "datasource",
                                 "query": "prometheus",
                                 "current": {"text": "Crypitor Prometheus",
                                             "value": DATASOURCE_UID}}]},
        "panels": [{"id": 1, "type": "timeseries", "title": "Up",
                    "gridPos": {"h": 8, "w": 12, "x": 0, "y": 0},
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "targets": [{"refId": "A", "expr": expr}]}],
    }


def boards() -> list[dict[str, Any]]:
    return [dashboard("crypitor-overview", "Crypitor overview"),
            dashboard("crypitor-chains", "Crypitor chains", expr="crypitor_chain_block_lag")]


async def push_to(fake: FakeGrafana, dashboards: list[dict[str, Any]], *,
                  token: str | None = None, prometheus_url: str = PROM,
                  timeout: float = 5.0) -> PushReport:
    return await push(fake.url, fake.token if token is None else token, FOLDER,
                      prometheus_url, dashboards, timeout=timeout)


# ---- what a push does ----

async def test_first_push_creates_folder_datasource_and_dashboards(
        fake_grafana: FakeGrafana) -> None:
    report = await push_to(fake_grafana, boards())
    assert report == PushReport(created=("crypitor-overview", "crypitor-chains"),
                                folder_created=True, datasource_created=True)
    assert fake_grafana.folders[FOLDER_UID]["title"] == FOLDER
    ds = fake_grafana.datasources[DATASOURCE_UID]
    assert (ds["type"], ds["url"], ds["access"]) == ("prometheus", PROM, "proxy")
    for model in boards():
        stored = fake_grafana.dashboards[model["uid"]]
        assert stored.folder_uid == FOLDER_UID and stored.model["version"] == 1
        assert same_content(stored.model, model)
    saves = fake_grafana.dashboard_saves()
    assert len(saves) == 2
    assert all(s["overwrite"] is True and s["folderUid"] == FOLDER_UID and s["message"]
               and s["dashboard"]["id"] is None for s in saves)
    assert report.summary() == ("dashboards: 2 created, 0 updated, 0 unchanged, "
                                "folder created, data source created")


async def test_second_push_changes_nothing(fake_grafana: FakeGrafana) -> None:
    await push_to(fake_grafana, boards())
    writes = len(fake_grafana.writes)
    report = await push_to(fake_grafana, boards())
    assert report == PushReport(unchanged=("crypitor-overview", "crypitor-chains"))
    assert len(fake_grafana.writes) == writes  # no POST /api/dashboards/db, nothing else
    assert [fake_grafana.version(m["uid"]) for m in boards()] == [1, 1]
    # it did look: one read of each dashboard
    reads = [p for m, p in fake_grafana.requests if m == "GET" and "/dashboards/uid/" in p]
    assert reads.count("/api/dashboards/uid/crypitor-overview") == 2


async def test_a_changed_dashboard_gets_a_new_version(fake_grafana: FakeGrafana) -> None:
    await push_to(fake_grafana, boards())
    changed = boards()
    changed[1]["panels"][0]["targets"][0]["expr"] = "max(crypitor_chain_block_lag)"
    report = await push_to(fake_grafana, changed)
    assert report == PushReport(updated=("crypitor-chains",), unchanged=("crypitor-overview",))
    assert fake_grafana.version("crypitor-chains") == 2
    assert fake_grafana.version("crypitor-overview") == 1
    stored = fake_grafana.dashboards["crypitor-chains"].model
    assert stored["panels"][0]["targets"][0]["expr"] == "max(crypitor_chain_block_lag)"
    assert (await push_to(fake_grafana, changed)).unchanged == ("crypitor-overview",
                                                                "crypitor-chains")


async def test_a_hand_edit_or_a_move_is_put_back(fake_grafana: FakeGrafana) -> None:
    await push_to(fake_grafana, boards())
    fake_grafana.edit_dashboard("crypitor-overview", title="Edited by hand")
    fake_grafana.add_folder("elsewhere", "Elsewhere")
    fake_grafana.dashboards["crypitor-chains"].folder_uid = "elsewhere"
    report = await push_to(fake_grafana, boards())
    assert report.updated == ("crypitor-overview", "crypitor-chains")
    assert fake_grafana.version("crypitor-overview") == 3  # ours, the hand edit, ours again
    assert fake_grafana.dashboards["crypitor-overview"].model["title"] == "Crypitor overview"
    assert fake_grafana.dashboards["crypitor-chains"].folder_uid == FOLDER_UID


def test_content_comparison_ignores_what_grafana_manages() -> None:
    ours = dashboard("u", "T")
    stored = {**copy.deepcopy(ours), "id": 17, "version": 4, "description": None}
    assert same_content(stored, ours)
    assert same_content({**ours, "tags": ("crypitor",)}, ours)  # tuples are JSON lists
    assert not same_content({**stored, "title": "Other"}, ours)
    assert not same_content({**stored, "refresh": "30s"}, ours)


async def test_new_prometheus_url_updates_the_data_source(fake_grafana: FakeGrafana) -> None:
    await push_to(fake_grafana, boards())
    report = await push_to(fake_grafana, boards(), prometheus_url="http://prom:9090")
    assert report.datasource_updated and not report.datasource_created
    assert fake_grafana.datasources[DATASOURCE_UID]["url"] == "http://prom:9090"


async def test_a_hand_made_folder_of_that_title_is_used(fake_grafana: FakeGrafana) -> None:
    fake_grafana.add_folder("hand-made", FOLDER)
    report = await push_to(fake_grafana, boards())
    assert not report.folder_created and len(report.created) == 2
    assert {d.folder_uid for d in fake_grafana.dashboards.values()} == {"hand-made"}
    assert FOLDER_UID not in fake_grafana.folders


async def test_version_conflict_is_retried_once(fake_grafana: FakeGrafana) -> None:
    conflict = {"message": "The dashboard has been changed by someone else",
                "status": "version-mismatch"}
    fake_grafana.fail(412, method="POST", path="/api/dashboards/db", body=conflict)
    report = await push_to(fake_grafana, boards())
    assert report.created == ("crypitor-overview", "crypitor-chains")
    assert [fake_grafana.version(m["uid"]) for m in boards()] == [1, 1]

    fake_grafana.fail(412, method="POST", path="/api/dashboards/db", body=conflict, times=2)
    changed = boards()
    changed[0]["title"] = "Overview, renamed"
    with pytest.raises(GrafanaError) as info:
        await push_to(fake_grafana, changed)
    assert str(info.value) == ("Grafana refused saving dashboard crypitor-overview (412): "
                               "The dashboard has been changed by someone else")
    assert not info.value.retryable


async def test_a_malformed_dashboard_is_our_bug(fake_grafana: FakeGrafana) -> None:
    with pytest.raises(ValueError, match=r"dashboards\[1\]: uid"):
        await push_to(fake_grafana, [dashboard("a", "A"), {"title": "no uid"}])
    with pytest.raises(ValueError, match="appears twice"):
        await push_to(fake_grafana, [dashboard("a", "A"), dashboard("a", "B")])
    assert fake_grafana.requests == []


# ---- errors: clear, and never holding the token ----

def assert_token_hidden(token: str, exc: BaseException, caplog: pytest.LogCaptureFixture
                        ) -> None:
    assert token not in str(exc)
    assert token not in "".join(traceback.format_exception(exc))
    text = "\n".join(logging.Formatter().format(r) for r in caplog.records)
    assert token not in text and token not in caplog.text


@pytest.mark.parametrize(("case", "expected", "retryable"), [
    ("wrong-token", "Grafana rejected the token (401): check [grafana].token", False),
    ("viewer", "the token lacks permission (403) for creating folder 'Crypitor'", False),
    ("editor", f"the token lacks permission (403) for creating data source {DATASOURCE_UID}",
     False),
    ("health-500", "Grafana answered 500 for the health check", True),
    ("save-502", "Grafana answered 502 for saving dashboard crypitor-overview", True),
    ("read-503", "Grafana answered 503 for reading dashboard crypitor-chains", True),
])
async def test_errors_are_clear_and_hold_no_token(
        fake_grafana: FakeGrafana, caplog: pytest.LogCaptureFixture, case: str,
        expected: str, retryable: bool) -> None:
    caplog.set_level(logging.DEBUG)
    token = {"wrong-token": "glsa_not-the-right-one_0123456789",
             "viewer": fake_grafana.viewer_token,
             "editor": fake_grafana.editor_token}.get(case, fake_grafana.token)
    if case == "health-500":
        fake_grafana.fail(500, path="/api/health")
    elif case == "save-502":
        fake_grafana.fail(502, method="POST", path="/api/dashboards/db")
    elif case == "read-503":
        fake_grafana.fail(503, path="/api/dashboards/uid/crypitor-chains")
    with pytest.raises(GrafanaError) as info:
        await push_to(fake_grafana, boards(), token=token)
    assert str(info.value) == expected
    assert info.value.retryable is retryable
    assert_token_hidden(token, info.value, caplog)
    # the client library did log at DEBUG (so the check above looked at something)
    assert any(r.name.startswith(("urllib3", "niquests")) for r in caplog.records)


async def test_unreachable_grafana(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    port, token = free_port(), "glsa_secret-token-for-a-closed-port"
    password = "hunter" + "22"  # (a literal would show in the traceback's source lines)
    with pytest.raises(GrafanaError) as info:
        await push(f"http://admin:{password}@127.0.0.1:{port}/", token, FOLDER, PROM,
                   boards(), timeout=2.0)
    assert str(info.value) == f"cannot reach Grafana at http://127.0.0.1:{port}: " \
                              "Connection refused"
    assert info.value.retryable and info.value.status is None
    assert_token_hidden(token, info.value, caplog)
    assert_token_hidden(password, info.value, caplog)


async def test_a_grafana_that_does_not_answer_in_time(fake_grafana: FakeGrafana) -> None:
    fake_grafana.fail(500, path="/api/health", delay=2.0)
    started = time.monotonic()
    with pytest.raises(GrafanaError) as info:
        await push_to(fake_grafana, boards(), timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert str(info.value) == f"cannot reach Grafana at {fake_grafana.url}: " \
                              "no answer within 0.3s"
    assert info.value.retryable


async def test_a_url_that_is_not_http() -> None:
    with pytest.raises(GrafanaError, match=r"\[grafana\]\.url must be an http\(s\) URL"):
        await push("grafana:3000", "t", FOLDER, PROM, boards())


# ---- the background pusher of `crypitor run` ----

async def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_pusher_retries_until_grafana_comes_up(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dashboards")
    port, token = free_port(), "glsa_background-token-0123456789"
    pusher = GrafanaPusher(f"http://127.0.0.1:{port}", token, FOLDER, PROM, boards(),
                           timeout=1.0, first_retry=0.02, max_retry=0.1)
    pusher.start()
    try:
        await wait_for(lambda: pusher.attempts >= 4)
        async with serve_fake_grafana(port, token=token) as fake:
            report = await asyncio.wait_for(pusher.wait(), 10)
            assert report is not None and len(report.created) == 2
            assert len(fake.dashboards) == 2
    finally:
        await pusher.stop()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one distinct failure, logged once however often retried
    assert "cannot reach Grafana" in warnings[0].getMessage()
    assert any("2 created" in r.getMessage() for r in caplog.records
               if r.levelno == logging.INFO)
    assert token not in caplog.text


async def test_pusher_retries_through_server_errors(
        fake_grafana: FakeGrafana, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dashboards")
    fake_grafana.fail(503, path="/api/health", times=3)
    fake_grafana.fail(500, method="POST", path="/api/folders")
    pusher = GrafanaPusher(fake_grafana.url, fake_grafana.token, FOLDER, PROM, boards(),
                           first_retry=0.01, max_retry=0.05)
    pusher.start()
    report = await asyncio.wait_for(pusher.wait(), 10)
    assert report is not None and report.folder_created and pusher.attempts == 5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # 503 on the health check, then 500 on the folder
    assert "Grafana answered 503 for the health check" in warnings[0]
    assert "Grafana answered 500 for creating folder 'Crypitor'" in warnings[1]


async def test_pusher_gives_up_on_a_refused_token_without_raising(
        fake_grafana: FakeGrafana, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = "glsa_wrong-token-0123456789"
    pusher = GrafanaPusher(fake_grafana.url, token, FOLDER, PROM, boards(), first_retry=0.01)
    pusher.start()
    assert await asyncio.wait_for(pusher.wait(), 10) is None
    assert pusher.attempts == 1 and pusher.last_error is not None
    assert pusher.last_error.status == 401
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == ["Grafana: dashboards not pushed: Grafana rejected the token (401): "
                      "check [grafana].token"]
    assert token not in caplog.text
    await pusher.stop()  # after it finished: a no-op


async def test_pusher_stops_while_retrying_and_survives_a_bug(
        caplog: pytest.LogCaptureFixture) -> None:
    pusher = GrafanaPusher(f"http://127.0.0.1:{free_port()}", "t", FOLDER, PROM, boards(),
                           first_retry=0.05)
    pusher.start()
    pusher.start()  # a second start does nothing
    await wait_for(lambda: pusher.attempts >= 2)
    await asyncio.wait_for(pusher.stop(), 5)
    assert await pusher.wait() is None

    caplog.set_level(logging.ERROR, logger="dashboards")
    broken = GrafanaPusher("http://127.0.0.1:1", "t", FOLDER, PROM, [{"uid": "x"}])
    broken.start()
    assert await asyncio.wait_for(broken.wait(), 5) is None
    assert any("dashboards not pushed" in r.getMessage() and r.exc_info
               for r in caplog.records)
    assert await GrafanaPusher("http://x", "t", FOLDER, PROM, []).wait() is None  # not started
