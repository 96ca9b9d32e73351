"""Redis Sentinel addresses of the Redis store: `[service].queue` may name a Sentinel group
instead of one server, so the store follows the primary across a failover.

The form (the one Lettuce and redis-sentinel-url document, with the service name in the path):
    redis+sentinel://[[user]:password@]host1[:port1][,host2[:port2]...]/service_name[/db]
The port defaults to 26379; the password (and user) authenticate to the primary, not to the
Sentinels. Errors never repeat the password: `redacted(url)` is what messages show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

SCHEME = "redis+sentinel://"
DEFAULT_PORT = 26379


@dataclass(frozen=True)
class SentinelAddress:
    """Where the Sentinels are, which primary they watch, and how to talk to it."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SCHEME)


def redacted(url: str) -> str:
    """`url` with the password (if any) replaced by `***`."""
    if not is_sentinel_url(url):
        return url
    rest = url[len(SCHEME):]
    userinfo, at, hosts = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{SCHEME}{user}{':***' if colon else ''}@{hosts}"


def parse_sentinel_url(url: str) -> SentinelAddress:
    """The address `url` names; ValueError (saying why, without the password) otherwise."""
    if not is_sentinel_url(url):
        raise ValueError(f"must start with {SCHEME}")
    rest = url[len(SCHEME):]
    if "?" in rest or "#" in rest:
        raise ValueError("takes no query or fragment")
    userinfo, at, rest = rest.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    hosts, slash, path = rest.partition("/")
    if not hosts:
        raise ValueError("names no Sentinel host (host1:26379,host2:26379,...)")
    sentinels = tuple(_host_port(part) for part in hosts.split(","))
    parts = path.split("/") if slash else []
    if not parts or not parts[0]:
        raise ValueError("the path must name the Sentinel service, like /mymaster or "
                         "/mymaster/0")
    if len(parts) > 2 or (len(parts) == 2 and not (parts[1].isdigit()
                                                     and int(parts[1]) < 2**31)):
        raise ValueError("the path must be /service_name or /service_name/<database number>")
    db = int(parts[1]) if len(parts) == 2 else 0
    return SentinelAddress(sentinels, unquote(parts[0]), db, username, password)


def _host_port(part: str) -> tuple[str, int]:
    if part.startswith("["):  # [IPv6]:port
        host, bracket, tail = part[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"{part!r} is not host or host:port")
        port_text = tail[1:]
    else:
        host, _, port_text = part.partition(":")
    if not host:
        raise ValueError(f"{part!r} names no host")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{part!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)
