"""The SSRF guard: a table of every refused kind in its IPv4 and IPv6 forms, the allowances,
URL vetting, and real requests through the guarded connector to servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from service import UnsafeTarget
from service.delivery.ssrf import Guard, GuardedResolver, check_url, classify, guarded_connector

REFUSED = [
    ("127.0.0.1", "loopback"), ("127.255.255.254", "loopback"), ("::1", "loopback"),
    ("10.0.0.1", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"),
    ("192.168.1.1", "private"), ("fc00::1", "private"), ("fd12:3456::1", "private"),
    ("fec0::1", "private"),
    ("169.254.0.1", "link-local"), ("fe80::1", "link-local"), ("fe80::1%eth0", "link-local"),
    ("100.64.0.1", "cgnat"), ("100.127.255.254", "cgnat"),
    ("169.254.169.254", "metadata"), ("100.100.100.200", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("255.255.255.255", "broadcast"),
    ("0.1.2.3", "reserved"), ("240.0.0.1", "reserved"), ("100::1", "reserved"),
    ("192.0.2.1", "documentation"), ("198.51.100.7", "documentation"),
    ("203.0.113.9", "documentation"), ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("198.18.0.1", "benchmarking"), ("198.19.255.255", "benchmarking"),
    ("2001:2::1", "benchmarking"), ("192.0.0.8", "ietf"),
    # IPv6 forms embedding a refused IPv4 address take its kind
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "metadata"),  # mapped
    ("::ffff:10.1.2.3", "private"), ("::ffff:0:192.168.0.1", "private"),  # SIIT
    ("::127.0.0.1", "loopback"), ("::10.0.0.1", "private"),  # IPv4-compatible
    ("::8.8.8.8", "reserved"),  # IPv4-compatible is deprecated outright
    ("2002:7f00:1::", "loopback"), ("2002:a9fe:a9fe::1", "metadata"),  # 6to4
    ("2002:6440:1::", "cgnat"),
    ("64:ff9b::127.0.0.1", "loopback"), ("64:ff9b::10.0.0.1", "private"),  # NAT64
    ("64:ff9b::a9fe:a9fe", "metadata"),
    ("64:ff9b:1::a9fe:a9fe", "metadata"),  # local-use NAT64, /96 layout
    ("64:ff9b:1:7f00:0:100::", "loopback"),  # local-use NAT64, /48 layout
    ("64:ff9b:1::8.8.8.8", "private"),  # local-use NAT64 only leads inside
    ("2001:0:808:808::80ff:fffe", "loopback"),  # Teredo client 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "documentation"),  # Teredo client 192.0.2.45
    ("2001:0:a00:1::f7f7:f7f7", "private"),  # Teredo server 10.0.0.1
]
ALLOWED = [
    "8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2a00:1450:4001::200e",
    # just outside the refused blocks
    "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0", "198.17.255.255",
    "198.20.0.0", "223.255.255.255", "11.0.0.0", "169.253.255.255", "192.0.1.255",
    # embedding forms of a public address lead to that public address
    "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::8.8.8.8", "2001:0:808:808::f7f7:f7f7",
]


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_refused_addresses_and_their_kinds(address: str, kind: str) -> None:
    ip = ipaddress.ip_address(address)
    assert classify(ip) == kind
    with pytest.raises(UnsafeTarget, match=f"refused by the SSRF guard \\({kind}\\)") as caught:
        Guard().check(ip)
    assert str(ip) in str(caught.value)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert classify(ip) is None
    Guard().check(ip)


@pytest.mark.parametrize(("address", "_kind"), REFUSED)
def test_allow_private_lets_everything_through(address: str, _kind: str) -> None:
    Guard(allow_private=True).check(ipaddress.ip_address(address))


def test_allowed_networks_open_only_themselves() -> None:
    guard = Guard(allowed_networks=["127.0.0.0/8", ipaddress.ip_network("fd00:1::/64")])
    for address in ("127.0.0.1", "127.9.9.9", "::ffff:127.0.0.1", "fd00:1::5"):
        guard.check(ipaddress.ip_address(address))
    for address in ("::1", "10.0.0.1", "169.254.169.254", "fd00:2::5"):
        with pytest.raises(UnsafeTarget):
            guard.check(ipaddress.ip_address(address))


@pytest.mark.parametrize("bad", ["10.0.0.1/8", "not-a-net", "300.0.0.0/8"])
def test_a_bad_allowed_network_names_itself(bad: str) -> None:
    with pytest.raises(ValueError, match=f"allowed_networks: '{bad}'"):
        Guard(allowed_networks=[bad])


@pytest.mark.parametrize("url", [
    "https://example.com/hook", "http://example.com:8080/x?y=1", "http://8.8.8.8/",
    "https://[2606:4700:4700::1111]:8443/", "http://localhost/",  # names: judged at delivery
    "http://bücher.example/",
])
def test_acceptable_urls(url: str) -> None:
    check_url(url)


@pytest.mark.parametrize(("url", "words"), [
    ("ftp://example.com/", "http or https"), ("example.com/hook", "http or https"),
    ("", "http or https"), ("http://", "no host"), ("http:///path", "no host"),
    ("http://user:pw@example.com/", "user name or password"),
    ("http://user@example.com/", "user name or password"),
    ("http://:pw@example.com/", "user name or password"),
    ("http://example.com:0/", "port"), ("http://example.com:99999/", "not a valid URL"),
    ("http://127.1/", "canonical"), ("http://2130706433/", "canonical"),
    ("http://0x7f.1/", "canonical"),
])
def test_bad_urls_are_value_errors(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        check_url(url)


@pytest.mark.parametrize(("url", "kind"), [
    ("http://127.0.0.1:8080/", "loopback"), ("http://[::1]/", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("https://[::ffff:10.0.0.1]/", "private"), ("http://[fe80::1%25eth0]/", "link-local"),
])
def test_refused_literal_urls(url: str, kind: str) -> None:
    with pytest.raises(UnsafeTarget, match=kind):
        check_url(url)
    check_url(url, Guard(allow_private=True))


# --- real requests through the guarded connector ---------------------------------------------

def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@contextlib.asynccontextmanager
async def serve(host: str) -> AsyncIterator[tuple[int, list[str]]]:
    """A webhook sink on host:free port; yields the port and the hosts it was reached by."""
    hits: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        hits.append(request.host)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, host, 0).start()
    try:
        yield runner.addresses[0][1], hits
    finally:
        await runner.cleanup()


async def post(guard: Guard, url: str, resolver: AbstractResolver | None = None) -> int:
    timeout = aiohttp.ClientTimeout(total=5)
    connector = guarded_connector(guard, resolver=resolver)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session, \
            session.post(url, data=b"{}") as response:
        return response.status


class FixedResolver(AbstractResolver):
    """Answers names from a table, as a DNS server under an attacker's control would."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self._table = table

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if host not in self._table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ResolveResult(hostname=host, host=address, port=port,
                              family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                              proto=0, flags=socket.AI_NUMERICHOST)
                for address in self._table[host]]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.1"])
async def test_loopback_is_refused_by_literal_and_by_name(host: str) -> None:
    async with serve("127.0.0.1") as (port, hits):
        with pytest.raises((UnsafeTarget, aiohttp.InvalidUrlClientError)) as caught:
            await post(Guard(), f"http://{host}:{port}/hook")
        assert hits == []
        if host != "127.1":  # aiohttp itself refuses this legacy form before any lookup
            assert caught.type is UnsafeTarget
            assert "127.0.0.1 (loopback)" in str(caught.value)


@pytest.mark.parametrize("guard", [
    Guard(allow_private=True), Guard(allowed_networks=["127.0.0.0/8"]),
], ids=["allow_private", "allowed_networks"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_an_allowed_loopback_sink_is_reached(guard: Guard, host: str) -> None:
    async with serve("127.0.0.1") as (port, hits):
        assert await post(guard, f"http://{host}:{port}/hook") == 204
        assert hits == [f"{host}:{port}"]


async def test_ipv6_loopback_is_refused_unless_allowed() -> None:
    if not has_ipv6_loopback():  # a property of the machine, not a package to install:
        if os.environ.get("CI"):  # in CI it is a failure all the same, never a silent skip
            pytest.fail("this machine has no IPv6 loopback (::1)")
        pytest.skip("this machine has no IPv6 loopback")
    async with serve("::1") as (port, hits):
        url = f"http://[::1]:{port}/hook"
        with pytest.raises(UnsafeTarget, match="loopback"):
            await post(Guard(), url)
        with pytest.raises(UnsafeTarget):  # an IPv4 allowance does not open ::1
            await post(Guard(allowed_networks=["127.0.0.0/8"]), url)
        assert hits == []
        assert await post(Guard(allow_private=True), url) == 204
        assert await post(Guard(allowed_networks=["::1/128"]), url) == 204
        assert len(hits) == 2


async def test_a_name_rebound_to_loopback_is_refused() -> None:
    resolver = FixedResolver({"hooks.example": ["127.0.0.1"]})
    async with serve("127.0.0.1") as (port, hits):
        with pytest.raises(UnsafeTarget, match=r"hooks\.example .*127\.0\.0\.1 \(loopback\)"):
            await post(Guard(), f"http://hooks.example:{port}/hook", resolver)
        assert hits == []


async def test_refused_addresses_are_dropped_and_the_rest_dialled() -> None:
    resolver = FixedResolver({"hooks.example": ["169.254.169.254", "10.0.0.1", "127.0.0.1"]})
    guard = Guard(allowed_networks=["127.0.0.0/8"])
    async with serve("127.0.0.1") as (port, hits):
        assert await post(guard, f"http://hooks.example:{port}/hook", resolver) == 204
        assert hits == [f"hooks.example:{port}"]


async def test_an_ordinary_dns_failure_stays_an_aiohttp_error() -> None:
    with pytest.raises(aiohttp.ClientConnectorDNSError) as caught:
        await post(Guard(), "http://nowhere.example/hook", FixedResolver({}))
    assert not isinstance(caught.value, UnsafeTarget)


async def test_the_resolver_alone_filters_real_lookups() -> None:
    refused = GuardedResolver(Guard())
    with pytest.raises(UnsafeTarget, match="localhost"):
        await refused.resolve("localhost", 80, socket.AF_UNSPEC)
    allowed = GuardedResolver(Guard(allowed_networks=["127.0.0.0/8", "::1/128"]))
    results = await allowed.resolve("localhost", 80, socket.AF_UNSPEC)
    assert results and {r["host"] for r in results} <= {"127.0.0.1", "::1"}
    await refused.close()
    await allowed.close()


async def test_repeated_and_concurrent_requests_are_all_refused() -> None:
    # concurrent lookups of one name share a single resolution in aiohttp: all must fail
    timeout = aiohttp.ClientTimeout(total=5)
    async with serve("127.0.0.1") as (port, hits), aiohttp.ClientSession(
            connector=guarded_connector(Guard()), timeout=timeout) as session:
        for _ in range(2):
            outcomes = await asyncio.gather(
                *(session.post(f"http://{host}:{port}/hook", data=b"{}")
                  for host in ("localhost", "localhost", "127.0.0.1")),
                return_exceptions=True)
            assert all(isinstance(outcome, UnsafeTarget) for outcome in outcomes), outcomes
        assert hits == []


async def test_an_allowed_socket_opens_one_port_not_the_whole_host() -> None:
    async with serve("127.0.0.1") as (port, hits), serve("127.0.0.1") as (other, _):
        guard = Guard(allowed_sockets=[("127.0.0.1", port, "/hook")])
        assert await post(guard, f"http://127.0.0.1:{port}/hook") == 204
        assert await post(guard, f"http://localhost:{port}/hook") == 204
        with pytest.raises(UnsafeTarget):
            await post(guard, f"http://127.0.0.1:{other}/hook")
        check_url(f"http://127.0.0.1:{port}/hook", guard)
        with pytest.raises(UnsafeTarget):
            check_url(f"http://127.0.0.1:{other}/hook", guard)
        assert len(hits) == 2


async def test_an_allowed_socket_opens_its_path_only_on_every_request() -> None:
    # the canary sink's exemption must not open the monitor's API on the same port
    async with serve("127.0.0.1") as (port, hits):
        guard = Guard(allowed_sockets=[("127.0.0.1", port, "/hook")])
        check_url(f"http://127.0.0.1:{port}/hook", guard)
        for path in ("/api/v1/targets", "/hook/", "/hook/../api", "/Hook", "/"):
            with pytest.raises(UnsafeTarget):
                check_url(f"http://127.0.0.1:{port}{path}", guard)
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(connector=guarded_connector(guard),
                                         timeout=timeout) as session:
            for host in ("127.0.0.1", "localhost"):
                # the allowed path first, so a pooled keep-alive connection is there to reuse
                async with session.post(f"http://{host}:{port}/hook", data=b"{}") as resp:
                    assert resp.status == 204
                with pytest.raises(UnsafeTarget, match="another path"):
                    await session.post(f"http://{host}:{port}/api/v1/targets", data=b"{}")
        assert len(hits) == 2
        # allow_private still allows everything
        assert await post(Guard(allow_private=True, allowed_sockets=[
            ("127.0.0.1", port, "/other")]), f"http://127.0.0.1:{port}/hook") == 204
