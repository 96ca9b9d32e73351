"""A lean HTTP/1.1 client for probes: a fresh connection, one request, the whole answer.

Built on `loop.create_connection` and one buffering protocol, so a probe costs a handful of
loop callbacks and each phase (resolve, connect, tls, processing, transfer) is timed apart.

Errors carry `.phase` (where it failed) and `.reason` (the probe failure reason):

    WireError           base class
    ├── DNSError        the host name did not resolve
    ├── RefusedError    the connection was refused
    ├── ConnectError    other network errors: unreachable, reset, closed early
    ├── TLSError        the handshake or certificate verification failed
    └── ProtocolError   the answer is not HTTP/1.x, or its framing is garbled

Timeouts are the caller's: bound `fetch` with `asyncio.timeout`; `Trace.phase` then names the
phase that was running, and `timeout_detail` words it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from datetime import datetime
from time import monotonic

from cryptography import x509

from probes.base import Reason
from probes.httpmessage import ParseError, Request, Response, ResponseParser, Url

__all__ = [
    "DEFAULT_MAX_BODY", "PHASES", "ConnectError", "DNSError", "ProtocolError", "RefusedError",
    "Request", "Response", "TLSError", "Trace", "Url", "WireError", "cert_not_after",
    "connect_tcp", "fetch", "timeout_detail", "tls_context",
]
PHASES = ("resolve", "connect", "tls", "processing", "transfer")
DEFAULT_MAX_BODY = 1 << 20
_WAITING = {
    "resolve": "resolving the host name", "connect": "connecting",
    "tls": "in the TLS handshake", "processing": "waiting for the response",
    "transfer": "reading the response body",
}


class WireError(Exception):
    reason = Reason.CONNECT

    def __init__(self, phase: str, message: str) -> None:
        super().__init__(message)
        self.phase = phase


class DNSError(WireError):
    reason = Reason.DNS


class RefusedError(WireError):
    reason = Reason.REFUSED


class ConnectError(WireError):
    reason = Reason.CONNECT


class TLSError(WireError):
    reason = Reason.TLS


class ProtocolError(WireError):
    reason = Reason.PROTOCOL


def timeout_detail(timeout: float, phase: str) -> str:
    return f"timed out after {timeout:g}s {_WAITING.get(phase, 'in ' + phase)} ({phase})"


class Trace:
    """Phase durations of one or more exchanges; redirect hops add to the same totals."""

    __slots__ = ("_clock", "_mark", "phase", "phases")

    def __init__(self, clock: Callable[[], float] = monotonic,
                 phases: dict[str, float] | None = None) -> None:
        self._clock = clock
        self._mark: float | None = None  # when the running phase began
        self.phase = ""  # the phase running now, or the last one after end()
        self.phases: dict[str, float] = {} if phases is None else phases

    def begin(self, phase: str) -> None:
        self.end()
        self.phase, self._mark = phase, self._clock()

    def end(self) -> None:
        if self._mark is not None:
            spent = self._clock() - self._mark
            self.phases[self.phase] = self.phases.get(self.phase, 0.0) + spent
            self._mark = None


class _Reader(asyncio.Protocol):
    """Feeds the parser as bytes arrive; resolves `done` with the response or a WireError."""

    __slots__ = ("_done", "_parser", "_trace")

    def __init__(self, done: asyncio.Future[Response], trace: Trace,
                 parser: ResponseParser) -> None:
        self._done, self._trace, self._parser = done, trace, parser

    def data_received(self, data: bytes) -> None:
        if self._done.done():
            return
        parser = self._parser
        if not parser.started:
            self._trace.begin("transfer")  # the first byte ends `processing`
        try:
            complete = parser.feed(data)
        except ParseError as exc:
            self._done.set_exception(ProtocolError(self._trace.phase, str(exc)))
            return
        if complete:
            self._complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done.done():
            return
        parser, phase = self._parser, self._trace.phase
        if exc is None and parser.eof():
            self._complete()
            return
        doing = _WAITING.get(phase, phase)
        if isinstance(exc, ssl.SSLError):
            error: WireError = TLSError(phase, f"TLS error {doing}: {exc}")
        elif exc is not None:
            error = ConnectError(phase, f"connection lost {doing}: {exc}")
        elif parser.response is not None:
            error = ConnectError(phase, f"connection closed after {parser.response.body_bytes}"
                                        " body bytes, before the end of the body")
        else:
            got = "in the middle of the response head" if parser.started else "without a response"
            error = ConnectError(phase, f"connection closed {got}")
        self._done.set_exception(error)

    def _complete(self) -> None:
        self._trace.end()
        assert self._parser.response is not None
        self._done.set_result(self._parser.response)


async def connect_tcp(host: str, port: int, is_ip: bool, trace: Trace,
                      protocol: Callable[[], asyncio.Protocol]) -> asyncio.Transport:
    """Resolves `host` (unless an IP) and connects, trying each address in turn."""
    loop = asyncio.get_running_loop()
    addresses: list[tuple[int, str]] = [(0, host)]
    if not is_ip:
        trace.begin("resolve")
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise DNSError("resolve", f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys((int(fam), str(addr[0])) for fam, _, _, _, addr in infos))
    trace.begin("connect")
    error: OSError | None = None
    for family, address in addresses:
        try:
            transport, _ = await loop.create_connection(protocol, address, port, family=family)
        except OSError as exc:
            error = exc
        else:
            return transport
    assert error is not None
    where = f"{host}:{port}"
    if isinstance(error, ConnectionRefusedError):
        raise RefusedError("connect", f"connection refused by {where}") from error
    raise ConnectError("connect", f"cannot connect to {where}: {error.strerror or error}") \
        from error


async def fetch(request: Request, trace: Trace, tls: ssl.SSLContext | None = None,
                max_body: int = DEFAULT_MAX_BODY) -> Response:
    """One exchange on a fresh connection, closed before returning whatever happens."""
    url = request.url
    done: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
    reader = _Reader(done, trace, ResponseParser(request.method == "HEAD", max_body))
    transport = await connect_tcp(url.host, url.port, url.is_ip, trace, lambda: reader)
    try:
        peer_cert = None
        if url.scheme == "https":
            if tls is None:
                raise ValueError("an https request needs an SSLContext")
            transport = await _start_tls(transport, reader, tls, url.host, trace)
            peer_cert = transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
        trace.begin("processing")
        transport.write(request.wire)
        response = await done
    finally:
        transport.abort()  # never a lingering socket, also on error and cancellation
        if not done.done():
            done.cancel()
        elif not done.cancelled():
            done.exception()  # retrieved: no "exception was never retrieved" noise
    response.peer_cert = peer_cert
    return response


async def _start_tls(transport: asyncio.Transport, reader: asyncio.Protocol,
                     tls: ssl.SSLContext, host: str, trace: Trace) -> asyncio.Transport:
    trace.begin("tls")
    loop = asyncio.get_running_loop()
    try:
        secured = await loop.start_tls(transport, reader, tls, server_hostname=host,
                                       ssl_handshake_timeout=None)
    except ssl.SSLCertVerificationError as exc:
        raise TLSError("tls", f"certificate verify failed: {exc.verify_message}") from exc
    except ssl.SSLError as exc:
        raise TLSError("tls", f"TLS handshake failed: {exc.reason or exc}") from exc
    except OSError as exc:
        raise ConnectError("tls", f"connection lost in the TLS handshake: {exc}") from exc
    if secured is None:
        raise ConnectError("tls", "connection closed in the TLS handshake")
    return secured


def tls_context(verify: bool = True, ca_file: str = "") -> ssl.SSLContext:
    """Build once and share (see ProbeContext.tls_contexts): loading CAs costs milliseconds."""
    if verify:
        context = ssl.create_default_context(cafile=ca_file or None)
    else:  # still read the certificate, for its expiry; trust nothing about it
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def cert_not_after(der: bytes) -> datetime:
    """The notAfter of a DER certificate, as an aware UTC datetime."""
    return x509.load_der_x509_certificate(der).not_valid_after_utc
