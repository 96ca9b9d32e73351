"""The http probe against real local servers: status, body and JSON checks, framing, phases,
timeouts, redirects, options, and that no socket outlives a probe (TLS: test_probe_https)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from monitor.config import resolve_fields
from probes.base import OptionError, ProbeContext, Reason
from probes.http import HttpOptions, HttpProbe
from tests.support.web import CHUNKS, TlsServer, open_fds, probe


async def test_ok_has_status_body_and_the_phases_reached(web_ctx: ProbeContext,
                                                        web_url: str) -> None:
    result = await probe(web_ctx, f"{web_url}/ok")
    assert (result.success, result.reason, result.detail) == (True, None, "")
    assert result.values == {"status_code": 200, "body_bytes": 2}
    assert list(result.phases) == ["connect", "processing", "transfer"]  # an IP: no resolve
    assert result.duration >= sum(result.phases.values())


async def test_a_host_name_is_resolved_first(web_ctx: ProbeContext, web_url: str) -> None:
    result = await probe(web_ctx, web_url.replace("127.0.0.1", "localhost") + "/ok")
    assert result.success, result.detail
    assert list(result.phases)[:2] == ["resolve", "connect"]


@pytest.mark.parametrize(("path", "expect", "ok"), [
    ("/status/500", (), False),
    ("/status/404", (404, 410), True),
    ("/ok", (201,), False),
    ("/status/204", (), True),
])
async def test_status_is_judged(web_ctx: ProbeContext, web_url: str, path: str,
                                expect: tuple[int, ...], ok: bool) -> None:
    result = await probe(web_ctx, web_url + path, expect_status=expect)
    assert result.success is ok
    assert result.reason is (None if ok else Reason.STATUS)
    if not ok:
        code = int(path.rsplit("/", 1)[1]) if "status" in path else 200
        assert result.detail == f"status {code}, expected {', '.join(map(str, expect)) or '2xx'}"
        assert result.values["status_code"] == code


async def test_body_regex(web_ctx: ProbeContext, web_url: str) -> None:
    assert (await probe(web_ctx, f"{web_url}/json", body_regex=r'"height":\s*142')).success
    result = await probe(web_ctx, f"{web_url}/json", body_regex="syncing.: true")
    assert (result.reason, result.detail) == (Reason.BODY, "body does not match /syncing.: true/")


async def test_json_conditions_hold(web_ctx: ProbeContext, web_url: str) -> None:
    conditions = ("result.height > 100", 'status == "ok"', "len(result.items) == 2",
                  "result.syncing == false", 'result.items[-1].name == "b"')
    result = await probe(web_ctx, f"{web_url}/json", json=conditions)
    assert result.success, result.detail


async def test_json_condition_failing_says_what_it_found(web_ctx: ProbeContext,
                                                        web_url: str) -> None:
    conditions = ("status exists", "result.height > 1000")
    result = await probe(web_ctx, f"{web_url}/json", json=conditions)
    assert (result.reason, result.detail) == (Reason.JSON, "result.height > 1000: got 142")
    assert result.values["status_code"] == 200


async def test_a_body_that_is_not_json_fails_json(web_ctx: ProbeContext, web_url: str) -> None:
    result = await probe(web_ctx, f"{web_url}/not-json", json=("status exists",))
    assert result.reason is Reason.JSON
    assert result.detail.startswith("body is not JSON")


async def test_a_slow_answer_within_the_timeout_succeeds(web_ctx: ProbeContext,
                                                         web_url: str) -> None:
    result = await probe(web_ctx, f"{web_url}/slow?head=0.2&body=0.2", timeout=5)
    assert result.success, result.detail
    assert result.values["body_bytes"] == 10


@pytest.mark.parametrize(("where", "timeout", "phase", "words"), [
    ("silent", 0.3, "processing", "waiting for the response"),
    # the head must arrive inside the timeout, also on a loaded machine
    ("slow-body", 1.5, "transfer", "reading the response body"),
    ("silent-tls", 0.3, "tls", "in the TLS handshake"),
])
async def test_a_timeout_names_its_phase(web_ctx: ProbeContext, web_url: str, silent_addr: str,
                                         where: str, timeout: float, phase: str,
                                         words: str) -> None:
    url = {"silent": f"http://{silent_addr}/", "silent-tls": f"https://{silent_addr}/",
           "slow-body": f"{web_url}/slow?body=5"}[where]
    result = await probe(web_ctx, url, timeout=timeout)
    assert result.reason is Reason.TIMEOUT
    assert result.detail == f"timed out after {timeout:g}s {words} ({phase})"
    assert list(result.phases)[-1] == phase


async def test_connection_refused(web_ctx: ProbeContext, closed_port: int) -> None:
    result = await probe(web_ctx, f"http://127.0.0.1:{closed_port}/")
    assert result.reason is Reason.REFUSED
    assert result.detail == f"connection refused by 127.0.0.1:{closed_port}"
    assert "status_code" not in result.values


async def test_a_name_that_does_not_resolve(web_ctx: ProbeContext) -> None:
    result = await probe(web_ctx, "http://no-such-host.invalid/")
    assert result.reason is Reason.DNS
    assert "no-such-host.invalid" in result.detail
    assert list(result.phases) == ["resolve"]


@pytest.mark.parametrize("path", ["/garbage", "/bad-status", "/bad-header", "/bad-length",
                                  "/bad-chunk"])
async def test_garbled_answers_are_protocol_errors(web_ctx: ProbeContext, raw_url: str,
                                                   path: str) -> None:
    # /garbage keeps the connection open: the probe must give up on the bytes, not the clock
    result = await probe(web_ctx, raw_url + path)
    assert result.reason is Reason.PROTOCOL, result.detail


@pytest.mark.parametrize(("path", "detail"), [
    ("/truncated", "connection closed after 5 body bytes, before the end of the body"),
    ("/empty", "connection closed without a response"),
])
async def test_an_answer_cut_short_is_a_connect_error(web_ctx: ProbeContext, raw_url: str,
                                                      path: str, detail: str) -> None:
    result = await probe(web_ctx, raw_url + path)
    assert (result.reason, result.detail) == (Reason.CONNECT, detail)


async def test_chunked_body(web_ctx: ProbeContext, web_url: str) -> None:
    result = await probe(web_ctx, f"{web_url}/chunked", body_regex="^alpha-beta-gamma$")
    assert result.success, result.detail
    assert result.values["body_bytes"] == len(b"".join(CHUNKS))


async def test_a_body_split_at_every_byte(web_ctx: ProbeContext, raw_url: str) -> None:
    result = await probe(web_ctx, f"{raw_url}/dribble", json=("len(a) == 2", "a[1] == 2"))
    assert result.success, result.detail
    assert result.values["body_bytes"] == len(b'{"a": [1, 2]}')


@pytest.mark.parametrize(("path", "method", "body_bytes"), [
    ("/close-delimited", "GET", len(b"read until close")),
    ("/interim", "GET", 2),
    ("/no-content", "GET", 0),  # 204 keeps the connection open: nothing more may come
    ("/head-open", "HEAD", 0),  # Content-Length 1000 and open: HEAD gets no body
])
async def test_framing(web_ctx: ProbeContext, raw_url: str, path: str, method: str,
                       body_bytes: int) -> None:
    result = await probe(web_ctx, raw_url + path, method=method)
    assert result.success, result.detail
    assert result.values["body_bytes"] == body_bytes


async def test_head_on_aiohttp(web_ctx: ProbeContext, web_url: str) -> None:
    result = await probe(web_ctx, f"{web_url}/ok", method="HEAD")
    assert (result.success, result.values["body_bytes"]) == (True, 0)


async def test_a_big_body_is_counted_but_not_kept(web_ctx: ProbeContext, web_url: str) -> None:
    result = await probe(web_ctx, f"{web_url}/big?size=5000", max_body_bytes=100,
                         body_regex="x{200}")
    assert result.values["body_bytes"] == 5000
    assert result.detail == "body does not match /x{200}/ (only the first 100 bytes kept)"


async def test_the_request_carries_method_headers_and_body(web_ctx: ProbeContext,
                                                           web_url: str) -> None:
    result = await probe(web_ctx, f"{web_url}/echo", method="POST", headers={"X-Api-Key": "k1"},
                         body='{"a":1}', body_regex="crypitor-monitor/",
                         json=('method == "POST"', 'headers["X-Api-Key"] == "k1"',
                               'body == "{\\"a\\":1}"', 'headers.Connection == "close"'))
    assert result.success, result.detail


async def test_redirects_are_not_followed_by_default(web_ctx: ProbeContext, web_url: str) -> None:
    result = await probe(web_ctx, f"{web_url}/redirect?to=/ok")
    assert (result.reason, result.values["status_code"]) == (Reason.STATUS, 302)
    assert (await probe(web_ctx, f"{web_url}/redirect?to=/ok", expect_status=(302,))).success


async def test_relative_redirects_are_followed(web_ctx: ProbeContext, web_url: str) -> None:
    result = await probe(web_ctx, f"{web_url}/hops/3", follow_redirects=True, body_regex="arrived")
    assert result.success, result.detail
    assert result.values["status_code"] == 200
    assert list(result.phases) == ["connect", "processing", "transfer"]  # summed over hops


async def test_a_redirect_loop_stops(web_ctx: ProbeContext, web_url: str) -> None:
    result = await probe(web_ctx, f"{web_url}/loop", follow_redirects=True, max_redirects=3)
    assert (result.reason, result.detail) == (Reason.STATUS,
                                              "more than 3 redirects, the last to '/loop'")


async def test_a_303_turns_post_into_get_and_credentials_stay_home(web_ctx: ProbeContext,
                                                                   web_url: str) -> None:
    other = web_url.replace("http://127.0.0.1", "localhost")
    elsewhere = f"http://{other}/echo"
    result = await probe(web_ctx, f"{web_url}/redirect?status=303&to={elsewhere}", method="POST",
                         body="x", headers={"Authorization": "Bearer s3cret", "X-Keep": "1"},
                         follow_redirects=True,
                         json=('method == "GET"', 'body == ""', 'headers["X-Keep"] == "1"',
                               f'headers.Host == "{other}"'))
    assert result.success, result.detail
    assert "resolve" in result.phases  # the second hop went to a host name
    check = await probe(web_ctx, f"{web_url}/redirect?status=303&to={elsewhere}", method="POST",
                        headers={"Authorization": "Bearer s3cret"}, follow_redirects=True,
                        json=("headers.Authorization exists",))
    assert check.reason is Reason.JSON  # dropped when the redirect left the origin


async def test_no_socket_outlives_a_probe(web_ctx: ProbeContext, web_url: str, raw_url: str,
                                          silent_addr: str, closed_port: int,
                                          tls_server: TlsServer) -> None:
    answering = [f"{web_url}/ok", f"{web_url}/chunked", f"{raw_url}/garbage",
                 f"{raw_url}/truncated", f"http://127.0.0.1:{closed_port}/", f"{tls_server.url}/ok"]
    silent = [f"http://{silent_addr}/", f"https://{silent_addr}/"]
    trusted = HttpProbe(f"{tls_server.url}/ok", 5.0,
                        HttpOptions(tls_ca_file=tls_server.ca_file), web_ctx)
    await probe(web_ctx, answering[0])  # let lazily opened files (resolver) open first
    before = open_fds()
    for _ in range(10):
        results = await asyncio.gather(trusted.run(),
                                       *(probe(web_ctx, url) for url in answering),
                                       *(probe(web_ctx, url, timeout=0.2) for url in silent))
        assert [r.reason for r in results] == [
            None, None, None, Reason.PROTOCOL, Reason.CONNECT, Reason.REFUSED, Reason.TLS,
            Reason.TIMEOUT, Reason.TIMEOUT]
    waiting = asyncio.ensure_future(probe(web_ctx, f"http://{silent_addr}/"))
    await asyncio.sleep(0.05)
    waiting.cancel()  # cancelled by the scheduler mid-probe
    with pytest.raises(asyncio.CancelledError):
        await waiting
    for _ in range(100):  # the servers close their ends soon after ours
        if open_fds() <= before:
            break
        await asyncio.sleep(0.02)
    assert open_fds() <= before


@pytest.mark.parametrize(("url", "options", "key"), [
    ("ftp://example.com/", {}, "url"),
    ("http:///path", {}, "url"),
    ("http://example.com:99999/", {}, "url"),
    ("http://example.com/", {"method": "GE T"}, "method"),
    ("http://example.com/", {"headers": {"X-A": "a\r\nInjected: 1"}}, "headers"),
    ("http://example.com/", {"headers": {"Content-Length": "3"}}, "headers"),
    ("http://example.com/", {"headers": {"Bad Name": "1"}}, "headers"),
    ("http://example.com/", {"expect_status": (99,)}, "expect_status"),
    ("http://example.com/", {"body_regex": "("}, "body_regex"),
    ("http://example.com/", {"json": ("ok exists", "a >> 1")}, "json[1]"),
    ("http://example.com/", {"max_redirects": -1}, "max_redirects"),
    ("http://example.com/", {"tls_ca_file": "/nonexistent/ca.pem"}, "tls_ca_file"),
])
async def test_bad_options_name_their_key(web_ctx: ProbeContext, url: str,
                                          options: dict[str, Any], key: str) -> None:
    with pytest.raises(OptionError) as caught:
        HttpProbe(url, 5.0, HttpOptions(**options), web_ctx)
    assert caught.value.key == key


def test_env_header_values_are_resolved_by_the_loader() -> None:
    options = HttpOptions(headers={"Authorization": "env:API_TOKEN"}, json=("a exists",))
    resolved = resolve_fields(options, "targets[0]", {"API_TOKEN": "Bearer x"})
    assert resolved.headers == {"Authorization": "Bearer x"}
    assert resolved.conditions == options.conditions  # derived again, not lost
