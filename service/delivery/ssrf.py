"""SSRF guard: which addresses a webhook delivery may connect to, judged after DNS resolution.

`Guard` holds the policy, `check_url` vets an endpoint URL at registration, and
`guarded_connector` puts the guard inside aiohttp's connector, where the addresses are dialled.
An exempt socket (the monitor's canary sink) is exempt for its exact paths only: the connector
checks every request's path against the peer it was sent to, pooled connections included.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.resolver import DefaultResolver
from aiohttp.tracing import Trace
from yarl import URL

from service import UnsafeTarget

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_Table = tuple[tuple[int, int, str], ...]
Exemption = tuple[str, int, str]  # (ip, port, exact path), e.g. the monitor's canary sink


def _table(*rows: tuple[str, str]) -> _Table:
    # plain integers: a lookup is a mask and a compare per row, no ipaddress object work
    nets = ((ipaddress.ip_network(net), kind) for net, kind in rows)
    return tuple((int(net.network_address), int(net.netmask), kind) for net, kind in nets)


# First match wins, so single addresses precede the blocks that hold them.
_V4 = _table(
    ("169.254.169.254/32", "metadata"),  # AWS, GCP, Azure, OpenStack, Oracle
    ("100.100.100.200/32", "metadata"),  # Alibaba Cloud
    ("0.0.0.0/32", "unspecified"),
    ("255.255.255.255/32", "broadcast"),
    ("0.0.0.0/8", "reserved"),  # "this network": Linux dials 0.x as the local host
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "cgnat"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "ietf"),  # IETF protocol assignments (DS-Lite, NAT64 discovery, ...)
    ("192.0.2.0/24", "documentation"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),
)
_V6 = _table(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fd00:ec2::254/128", "metadata"),  # AWS instance metadata over IPv6
    ("100::/64", "reserved"),  # discard-only
    ("2001:2::/48", "benchmarking"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),  # RFC 9637
    ("fc00::/7", "private"),  # unique local
    ("fe80::/10", "link-local"),
    ("fec0::/10", "private"),  # deprecated site-local, still routed inside some sites
    ("ff00::/8", "multicast"),
)
# IPv6 prefixes whose addresses carry an IPv4 address that the packet may end up at.
_MAPPED, _SIIT, _COMPAT, _NAT64 = _table(
    ("::ffff:0:0/96", "mapped"), ("::ffff:0:0:0/96", "siit"), ("::/96", "compat"),
    ("64:ff9b::/96", "nat64"),
)
_NAT64_LOCAL = _table(("64:ff9b:1::/48", "nat64-local"))[0]
_LOW32 = 0xFFFFFFFF


def _lookup(table: _Table, value: int) -> str | None:
    for net, mask, kind in table:
        if value & mask == net:
            return kind
    return None


def _within(row: tuple[int, int, str], value: int) -> bool:
    return value & row[1] == row[0]


def _rfc6052(value: int) -> Iterator[int]:
    """IPv4 addresses a local-use NAT64 address may embed: the operator picks the prefix
    length (48, 56, 64 or 96), so read every layout whose must-be-zero bits are zero."""
    if (value >> 56) & 0xFF == 0:  # bits 64-71, the "u" octet, never carry address bits
        squeezed = (value >> 64 << 56) | (value & ((1 << 56) - 1))  # the u octet cut out
        for length in (48, 56, 64):
            suffix_bits = 120 - length - 32
            if squeezed & ((1 << suffix_bits) - 1) == 0:
                yield (squeezed >> suffix_bits) & _LOW32
    yield value & _LOW32


def _embedded_v4(ip: ipaddress.IPv6Address) -> Iterator[int]:
    value = int(ip)
    if any(_within(row, value) for row in (_MAPPED, _SIIT, _COMPAT, _NAT64)):
        yield value & _LOW32
    elif ip.sixtofour is not None:
        yield int(ip.sixtofour)
    elif ip.teredo is not None:
        server, client = ip.teredo
        yield from (int(client), int(server))  # the client is where the packet is bound
    elif _within(_NAT64_LOCAL, value):
        yield from _rfc6052(value)


def classify(ip: IPAddress) -> str | None:
    """The kind of address the guard refuses ("loopback", "private", "metadata", ...), or None
    for an address that may be dialled. IPv6 forms embedding a refused IPv4 take its kind."""
    value = int(ip)
    if isinstance(ip, ipaddress.IPv4Address):
        return _lookup(_V4, value)
    kind = _lookup(_V6, value)
    if kind is not None:
        return kind
    for v4 in _embedded_v4(ip):
        kind = _lookup(_V4, v4)
        if kind is not None:
            return kind
    if _within(_COMPAT, value):
        return "reserved"  # IPv4-compatible addresses are deprecated: nothing legitimate uses them
    if _within(_NAT64_LOCAL, value):
        return "private"  # a local-use NAT64 prefix only ever leads into the local network
    return None


class Guard:
    """The delivery policy: refuse `classify`'s kinds unless `allow_private` (allow all), the
    address lies in `allowed_networks`, or the request goes to one of `allowed_sockets`'
    exact (ip, port, path) triples (the monitor's canary sink: one path on one port of
    loopback, not the monitor's API beside it)."""

    def __init__(self, allow_private: bool = False,
                 allowed_networks: Sequence[str | IPNetwork] = (),
                 allowed_sockets: Sequence[Exemption] = ()) -> None:
        self.allow_private = allow_private
        paths: dict[tuple[IPAddress, int], set[str]] = {}
        for host, port, path in allowed_sockets:
            paths.setdefault((ipaddress.ip_address(host), port), set()).add(path)
        self.allowed_sockets = {sock: frozenset(p) for sock, p in paths.items()}
        self.allowed_networks: tuple[IPNetwork, ...] = ()
        self.allow_networks(allowed_networks)

    def allow_networks(self, allowed_networks: Sequence[str | IPNetwork]) -> None:
        """Replace the networks always let through (also a config reload's); ValueError
        names an entry that is no network, and then nothing changes."""
        networks: list[IPNetwork] = []
        for item in allowed_networks:
            try:
                networks.append(ipaddress.ip_network(item))
            except ValueError as exc:
                raise ValueError(f"allowed_networks: {item!r} is not a network ({exc})") from None
        self.allowed_networks = tuple(networks)

    def refusal(self, ip: IPAddress, port: int | None = None,
                path: str | None = None) -> str | None:
        """The kind that refuses `ip` (on `port`, for `path`), or None when the guard lets it
        through. An exempt socket passes with `path` None (dialling: the path is judged per
        request by `exempt_path_refused`) or with one of its paths."""
        if self.allow_private:
            return None
        paths = self.allowed_sockets.get((ip, port)) if port is not None else None
        if paths is not None and (path is None or path in paths):
            return None
        kind = classify(ip)
        if kind is None or self._allowed(ip):
            return None
        return kind

    def check(self, ip: IPAddress, port: int | None = None, path: str | None = None) -> None:
        kind = self.refusal(ip, port, path)
        if kind is not None:
            raise UnsafeTarget(f"{ip} is refused by the SSRF guard ({kind})")

    def exempt_path_refused(self, peer: Any, path: str) -> str | None:
        """For a request sent on a connection to `peer` (a socket's peername): the refusal
        when that peer is an exempt socket reached only thanks to its exemption and `path` is
        not one of its paths; None otherwise."""
        if self.allow_private or not self.allowed_sockets:
            return None
        try:
            ip = ipaddress.ip_address(peer[0])
            port = int(peer[1])
        except (TypeError, ValueError, IndexError):
            return "unparsable"  # fail closed on a peer we cannot judge
        if (ip, port) not in self.allowed_sockets:
            return None
        return self.refusal(ip, port, path)

    def _allowed(self, ip: IPAddress) -> bool:
        # a v4-mapped address is the v4 address on the wire, so the v4 allowances apply to it
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        return any(ip in net or (mapped is not None and mapped in net)
                   for net in self.allowed_networks)


_STRICT = Guard()


def check_url(url: str, guard: Guard | None = None) -> None:
    """Vet an endpoint URL at registration: ValueError if it is not http(s) with a host and no
    credentials, UnsafeTarget if its host is an IP literal `guard` refuses (default: strict).
    Host names are judged at delivery time, by the connector, on what they resolve to then."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"the URL scheme must be http or https (got {parsed.scheme!r})")
    host = parsed.raw_host
    if not host:
        raise ValueError("the URL has no host")
    if parsed.user is not None or parsed.password is not None:
        raise ValueError("the URL must not carry a user name or password")
    if parsed.port == 0:
        raise ValueError("the URL's port must not be 0")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        (guard or _STRICT).check(ip, parsed.port, parsed.raw_path)
        return
    try:  # "127.1", "2130706433", "0x7f.1": getaddrinfo would dial them as IPv4
        socket.inet_aton(host)
    except OSError:
        return
    raise ValueError(f"the URL host {host!r} is not a canonical IPv4 address")


def safe_addresses(guard: Guard, host: str, port: int, addresses: Sequence[str]) -> list[str]:
    """`addresses` (what `host` resolved to, or the IP literal itself) without those `guard`
    refuses on `port`; UnsafeTarget naming the refused ones if that leaves none."""
    if guard.allow_private:
        return list(addresses)
    safe, refused = [], []
    for address in addresses:
        try:
            kind = guard.refusal(ipaddress.ip_address(address), port)
        except ValueError:
            kind = "unparsable"  # fail closed on anything we cannot judge
        if kind is None:
            safe.append(address)
        else:
            refused.append(f"{address} ({kind})")
    if refused and not safe:
        raise UnsafeTarget(f"{host} is refused by the SSRF guard: {', '.join(refused)}")
    return safe


def _keep_safe(guard: Guard, host: str, results: list[ResolveResult]) -> list[ResolveResult]:
    """`results` (one lookup: one port) without refused addresses; UnsafeTarget if that
    leaves none."""
    if guard.allow_private or not results:
        return results
    kept = set(safe_addresses(guard, host, results[0]["port"], [r["host"] for r in results]))
    return [r for r in results if r["host"] in kept]


class GuardedResolver(AbstractResolver):
    """Resolves with `inner` (aiohttp's default resolver unless given), then drops the
    addresses `guard` refuses; raises UnsafeTarget when none is left."""

    def __init__(self, guard: Guard, inner: AbstractResolver | None = None) -> None:
        self._guard = guard
        self._owns_inner = inner is None
        self._inner = DefaultResolver() if inner is None else inner

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return _keep_safe(self._guard, host, await self._inner.resolve(host, port, family))

    async def close(self) -> None:
        if self._owns_inner:
            await self._inner.close()


class GuardedConnector(aiohttp.TCPConnector):
    """A TCPConnector that dials only addresses the guard allows, however the host is named."""

    def __init__(self, guard: Guard, *, resolver: AbstractResolver | None = None,
                 **kwargs: Any) -> None:
        self._guarded_resolver = GuardedResolver(guard, resolver)
        super().__init__(resolver=self._guarded_resolver, **kwargs)
        self._guard = guard

    async def _resolve_host(self, host: str, port: int,
                            traces: Sequence[Trace] | None = None) -> list[ResolveResult]:
        # aiohttp answers IP-literal hosts itself without asking the resolver, so the list
        # about to be dialled is judged here too (names: again, cheaply; cache hits: again).
        results = await super()._resolve_host(host, port, traces=traces)
        return _keep_safe(self._guard, host, results)

    async def connect(self, req: ClientRequest, traces: list[Trace],
                      timeout: aiohttp.ClientTimeout) -> Connection:
        conn = await super().connect(req, traces, timeout)
        if self._guard.allowed_sockets and not self._guard.allow_private:
            # every request, pooled connections included: an exempt socket takes its paths only
            transport = conn.transport
            peer = transport.get_extra_info("peername") if transport is not None else None
            kind = self._guard.exempt_path_refused(peer, req.url.raw_path)
            if kind is not None:
                conn.close()
                raise UnsafeTarget(f"{req.url.raw_host}:{req.url.port}{req.url.raw_path} is "
                                   f"refused by the SSRF guard ({kind}; the exemption is for "
                                   "another path)")
        return conn

    async def close(self, *, abort_ssl: bool = False) -> None:
        # aiohttp closes only resolvers it created itself; ours may own a DefaultResolver
        await super().close(abort_ssl=abort_ssl)
        await self._guarded_resolver.close()


def guarded_connector(guard: Guard, **kwargs: Any) -> aiohttp.TCPConnector:
    """An aiohttp connector enforcing `guard`; `kwargs` go to TCPConnector (limit, ssl, ...).

    A refusal leaves `ClientSession.request` as `service.UnsafeTarget` itself, unwrapped:
    aiohttp wraps only OSErrors from resolution (into `ClientConnectorDNSError`) and
    UnsafeTarget is not one, so `except UnsafeTarget` before `except aiohttp.ClientError`
    tells a refusal from a DNS failure. A proxy resolves the target itself, out of the
    guard's sight: never give a guarded session a proxy (nor `trust_env=True`).
    """
    return GuardedConnector(guard, **kwargs)
