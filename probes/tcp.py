"""The `tcp` probe: can a TCP connection to host:port be opened, and how fast.

It shares resolution, connection and error mapping with the http probe (`probes.httpwire`)
and closes the connection as soon as it is open.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

from probes.base import OptionError, Outcome, ProbeContext, ProbeResult, Reason
from probes.httpmessage import is_ip_literal
from probes.httpwire import Trace, WireError, connect_tcp, timeout_detail


@dataclass(frozen=True)
class TcpOptions:
    """No options yet: the URL and timeout say everything a plain connect check needs."""


def parse_tcp_url(url: str) -> tuple[str, int]:
    """`tcp://host:port` as (host, port); IPv6 hosts in brackets. ValueError when malformed."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "tcp":
        raise ValueError("must be a tcp://host:port URL")
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError("must be only tcp://host:port")
    port = parts.port  # raises ValueError when out of range or not a number
    if not port:
        raise ValueError("needs a port, as in tcp://host:port")
    return parts.hostname, port


class TcpProbe:
    def __init__(self, url: str, timeout: float, options: TcpOptions,
                 ctx: ProbeContext) -> None:
        try:
            self._host, self._port = parse_tcp_url(url)
        except ValueError as exc:
            raise OptionError("url", str(exc), url) from exc
        if timeout <= 0:
            raise OptionError("timeout", "must be more than 0s", timeout)
        self._is_ip = is_ip_literal(self._host)
        self._timeout, self._options, self._ctx = timeout, options, ctx

    async def run(self) -> ProbeResult:
        out = Outcome(self._ctx.clock)
        trace = Trace(self._ctx.clock.monotonic, out.phases)
        try:
            async with asyncio.timeout(self._timeout):
                transport = await connect_tcp(self._host, self._port, self._is_ip, trace,
                                              asyncio.Protocol)
        except TimeoutError:
            phase = trace.phase
            trace.end()
            out.fail(Reason.TIMEOUT, timeout_detail(self._timeout, phase))
        except WireError as exc:
            trace.end()
            out.fail(exc.reason, str(exc))
        else:
            trace.end()
            transport.abort()
            out.values["connect_seconds"] = out.phases["connect"]
        return out.result()
