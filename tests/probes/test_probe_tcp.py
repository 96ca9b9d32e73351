"""The tcp probe against real sockets: an open port, a closed one, names, and bad URLs."""

from __future__ import annotations

import asyncio

import pytest

from probes.base import OptionError, ProbeContext, ProbeResult, Reason
from probes.tcp import TcpOptions, TcpProbe, parse_tcp_url
from tests.support.web import open_fds


async def probe(ctx: ProbeContext, url: str, timeout: float = 5.0) -> ProbeResult:
    return await TcpProbe(url, timeout, TcpOptions(), ctx).run()


async def test_an_open_port(web_ctx: ProbeContext, silent_addr: str) -> None:
    result = await probe(web_ctx, f"tcp://{silent_addr}")
    assert (result.success, result.reason, result.detail) == (True, None, "")
    assert list(result.values) == ["connect_seconds"]
    assert result.values["connect_seconds"] == result.phases["connect"]
    assert list(result.phases) == ["connect"]


async def test_a_host_name_is_resolved_first(web_ctx: ProbeContext, silent_addr: str) -> None:
    result = await probe(web_ctx, "tcp://" + silent_addr.replace("127.0.0.1", "localhost"))
    assert result.success, result.detail
    assert list(result.phases) == ["resolve", "connect"]


async def test_a_closed_port_is_refused(web_ctx: ProbeContext, closed_port: int) -> None:
    result = await probe(web_ctx, f"tcp://127.0.0.1:{closed_port}")
    assert (result.reason, result.detail) == (Reason.REFUSED,
                                              f"connection refused by 127.0.0.1:{closed_port}")
    assert "connect_seconds" not in result.values


async def test_a_name_that_does_not_resolve(web_ctx: ProbeContext) -> None:
    result = await probe(web_ctx, "tcp://no-such-host.invalid:5432")
    assert result.reason is Reason.DNS


async def test_many_probes_leave_no_socket_open(web_ctx: ProbeContext, silent_addr: str,
                                                closed_port: int) -> None:
    await probe(web_ctx, f"tcp://{silent_addr}")
    before = open_fds()
    for _ in range(20):
        await asyncio.gather(probe(web_ctx, f"tcp://{silent_addr}"),
                             probe(web_ctx, f"tcp://127.0.0.1:{closed_port}"))
    for _ in range(100):  # the server closes its end soon after ours
        if open_fds() <= before:
            break
        await asyncio.sleep(0.02)
    assert open_fds() <= before


@pytest.mark.parametrize("url", [
    "tcp://db.example.com",  # no port
    "http://db.example.com:5432",
    "tcp://:5432",
    "tcp://db.example.com:99999",
    "tcp://db.example.com:5432/path",
    "tcp://user@db.example.com:5432",
])
async def test_bad_urls_are_option_errors(web_ctx: ProbeContext, url: str) -> None:
    with pytest.raises(OptionError) as caught:
        TcpProbe(url, 5.0, TcpOptions(), web_ctx)
    assert (caught.value.key, caught.value.value) == ("url", url)


def test_url_forms() -> None:
    assert parse_tcp_url("tcp://[::1]:5432") == ("::1", 5432)
    assert parse_tcp_url("TCP://Db.Example.com:5432/") == ("db.example.com", 5432)
