"""The http probe over TLS: a trusted private CA, an untrusted one, verification off,
certificate expiry (warning and failure), and the same probes under uvloop."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
import uvloop

from probes.base import ProbeContext, ProbeResult, Reason
from tests.support.web import (
    TLS_DAYS_LEFT,
    TlsServer,
    open_fds,
    probe,
    serve_app,
    serve_raw,
    serve_silent,
    tls_pair,
)


def days_until(when: datetime) -> float:
    return (when - datetime.now(UTC)).total_seconds() / 86400


async def test_tls_with_the_ca_trusted(web_ctx: ProbeContext, tls_server: TlsServer) -> None:
    result = await probe(web_ctx, f"{tls_server.url}/ok", tls_ca_file=tls_server.ca_file)
    assert result.success, result.detail
    assert list(result.phases) == ["connect", "tls", "processing", "transfer"]
    days = result.values["cert_expiry_days"]
    assert isinstance(days, float)
    assert days == pytest.approx(days_until(tls_server.not_after), abs=0.01)
    when = f"{tls_server.not_after:%Y-%m-%d %H:%M} UTC"
    assert result.warnings == (f"certificate expires in {days:.1f} days ({when})",)
    assert days < TLS_DAYS_LEFT
    quiet = await probe(web_ctx, f"{tls_server.url}/ok", tls_ca_file=tls_server.ca_file,
                        cert_expiry_warn=86400.0)
    assert (quiet.success, quiet.warnings) == (True, ())


async def test_tls_checks_the_name(web_ctx: ProbeContext, tls_server: TlsServer,
                                   tmp_path: Path) -> None:
    named = tls_server.url.replace("127.0.0.1", "localhost")
    result = await probe(web_ctx, f"{named}/ok", tls_ca_file=tls_server.ca_file)
    assert result.success, result.detail
    context, ca_file, _ = tls_pair(tmp_path, TLS_DAYS_LEFT, ("other.example",))
    async with serve_app(context) as url:
        mismatch = await probe(web_ctx, f"{url}/ok", tls_ca_file=ca_file)
        unchecked = await probe(web_ctx, f"{url}/ok", tls_verify=False)
    assert mismatch.reason is Reason.TLS
    assert "mismatch" in mismatch.detail
    assert unchecked.success, unchecked.detail


async def test_tls_with_an_untrusted_ca_fails(web_ctx: ProbeContext, tls_server: TlsServer) -> None:
    result = await probe(web_ctx, f"{tls_server.url}/ok")
    assert result.reason is Reason.TLS
    assert result.detail.startswith("certificate verify failed")
    assert "status_code" not in result.values


async def test_tls_without_verification_still_reads_expiry(web_ctx: ProbeContext,
                                                           tls_server: TlsServer) -> None:
    result = await probe(web_ctx, f"{tls_server.url}/ok", tls_verify=False)
    assert result.success, result.detail
    assert result.values["cert_expiry_days"] == pytest.approx(
        days_until(tls_server.not_after), abs=0.01)


async def test_an_expired_certificate_fails_tls(web_ctx: ProbeContext,
                                                expired_tls_server: TlsServer) -> None:
    url = f"{expired_tls_server.url}/ok"
    unverified = await probe(web_ctx, url, tls_verify=False)
    assert unverified.reason is Reason.TLS
    assert unverified.detail.startswith("certificate expired 2.0 days ago")
    assert unverified.values["status_code"] == 200
    verified = await probe(web_ctx, url, tls_ca_file=expired_tls_server.ca_file)
    assert verified.reason is Reason.TLS
    assert "expired" in verified.detail


def test_the_same_probes_under_uvloop(tmp_path: Path) -> None:
    async def scenario() -> list[ProbeResult]:
        context, ca_file, _ = tls_pair(tmp_path, TLS_DAYS_LEFT)
        async with aiohttp.ClientSession() as session, serve_app() as web, \
                serve_raw() as raw, serve_app(context) as tls, serve_silent() as silent:
            c = ProbeContext(session)
            results = [await probe(c, f"{web}/json", json=("result.height == 142",)),
                       await probe(c, f"{web}/chunked"),
                       await probe(c, f"{raw}/dribble"),
                       await probe(c, f"{tls}/ok", tls_ca_file=ca_file)]
            before = open_fds()
            results += [await probe(c, f"{tls}/ok"),
                        await probe(c, f"{raw}/garbage"),
                        await probe(c, f"http://{silent}/", timeout=0.2),
                        await probe(c, f"https://{silent}/", timeout=0.2)]
            for _ in range(100):  # the servers close their ends soon after ours
                if open_fds() <= before:
                    break
                await asyncio.sleep(0.02)
            assert open_fds() <= before
            return results

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        results = runner.run(scenario())
    assert [r.reason for r in results] == [None] * 4 + [Reason.TLS, Reason.PROTOCOL,
                                                         Reason.TIMEOUT, Reason.TIMEOUT]
    assert "cert_expiry_days" in results[3].values
    assert [r.detail.rsplit(" ", 1)[1] for r in results[-2:]] == ["(processing)", "(tls)"]


async def test_probes_with_the_same_tls_settings_share_one_context(
        web_ctx: ProbeContext, tls_server: TlsServer) -> None:
    first = await probe(web_ctx, f"{tls_server.url}/ok", tls_ca_file=tls_server.ca_file)
    second = await probe(web_ctx, f"{tls_server.url}/ok", tls_ca_file=tls_server.ca_file)
    unverified = await probe(web_ctx, f"{tls_server.url}/ok", tls_verify=False)
    assert first.success and second.success and unverified.success
    assert set(web_ctx.tls_contexts) == {(True, tls_server.ca_file), (False, "")}
