"""Google Cloud Monitoring export, credentials: missing Application Default Credentials or
unusable settings disable the exporter without stopping the monitor; ADC talk TLS and lend
their project."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from google.auth.credentials import AnonymousCredentials

from monitor.config import GcpSection
from monitor.exporters.gcp import GcpExporter
from tests.monitor.gcp_helpers import FAST, StepClock, probe_registry, records
from tests.support.fake_gcp import FakeGcp

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def no_adc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/credentials.json")
    yield


async def test_missing_credentials_disable_the_exporter_without_raising(
        no_adc: None, caplog: pytest.LogCaptureFixture) -> None:
    section = GcpSection(project_id="p", interval=60.0)
    exporter = GcpExporter(section, probe_registry())
    await exporter.start()  # must not raise: `crypitor run` goes on without the export
    assert not await exporter.ready()
    assert not exporter.tick()
    assert not await exporter.export_once()
    (logged,) = records(caplog, "disabled")
    assert logged.levelno == logging.ERROR and "credentials.json" in logged.getMessage()
    assert "Application Default Credentials" in logged.getMessage()
    await exporter.stop()


@pytest.mark.parametrize(("project", "endpoint", "why"), [
    ("p", "", "needs gcp.api_endpoint"),
    ("", "127.0.0.1:1", "project_id is empty"),
    ("env:GCP_PROJECT", "127.0.0.1:1", "unresolved env:"),
])
async def test_unusable_settings_disable_the_exporter(
        project: str, endpoint: str, why: str, caplog: pytest.LogCaptureFixture) -> None:
    section = GcpSection(project_id=project, interval=60.0, api_endpoint=endpoint,
                         insecure=True)
    exporter = GcpExporter(section, probe_registry())
    await exporter.start()
    assert not await exporter.ready()
    (logged,) = records(caplog, why)
    assert logged.levelno == logging.ERROR
    await exporter.stop()


async def test_default_credentials_talk_tls_and_lend_their_project(
        fake_gcp: FakeGcp, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Without `insecure` the client uses ADC over TLS: against the plain-text fake every
    call fails (and is reported once), and an empty project_id comes from the credentials."""
    looked_up: list[object] = []

    def fake_adc(scopes: object = None) -> tuple[AnonymousCredentials, str]:
        looked_up.append(scopes)
        return AnonymousCredentials(), "adc-project"  # type: ignore[no-untyped-call]

    monkeypatch.setattr("monitor.exporters.gcp.exporter.default_credentials", fake_adc)
    section = GcpSection(project_id="", interval=60.0, api_endpoint=fake_gcp.address)
    clock = StepClock()
    exporter = GcpExporter(section, probe_registry(), now=clock, backoff=FAST,
                           call_timeout=2.0)
    await exporter.start()
    try:
        assert await exporter.ready()
        assert exporter.project_id == "adc-project" and looked_up
        for _ in range(2):
            clock.advance()
            assert not await exporter.export_once()
    finally:
        await exporter.stop()
    assert fake_gcp.requests == []
    assert len(records(caplog, "unavailable or too slow")) == 1
