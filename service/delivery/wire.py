"""The dispatcher's HTTP/1.1 client: POSTs over pooled keep-alive connections, one pool per
(scheme, host, port), the SSRF guard judging every address as it is dialled (a pooled
connection was judged once, when it was opened; an exempt socket's path on every request).

Below aiohttp on purpose (STYLE rule 9): `python -m bench.service_profile` showed aiohttp's
client taking about 100 of the 160 µs of CPU a delivery cost; here a request is one
prepared byte string written to a buffered protocol and the answer is framed by llhttp
(httptools). It does only what deliveries need: POST with a body, redirects never followed,
no cookies, no proxy, the answer's kept headers and its first `BODY_KEPT` bytes.

Errors: `service.UnsafeTarget` (the guard refused), `service.DeliveryFailed` (no connection,
or no complete answer; the message is the attempt's error text) and `TimeoutError` (no
answer within `timeout` seconds).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple, cast

import httptools
from yarl import URL

from service import DeliveryFailed, UnsafeTarget
from service.delivery.ssrf import Guard, safe_addresses

Resolve = Callable[[str, int], Awaitable[list[str]]]  # (host, port) -> addresses
KEPT_HEADERS = frozenset((b"content-type", b"retry-after", b"location", b"server",
                          b"x-request-id"))
BODY_KEPT = 4096
MAX_DRAIN = 64 * 1024  # body bytes read past BODY_KEPT so the connection is kept; beyond: closed
MAX_HEAD = 64 * 1024
IDLE_TIMEOUT = 30.0  # seconds a pooled connection may wait before it is closed instead of used
MAX_IDLE = 256  # idle connections kept per pool
USER_AGENT = "crypitor-webhooks/1"


class Answer(NamedTuple):
    status: int
    headers: dict[str, str]  # the KEPT_HEADERS that were sent, names as the server wrote them
    body: str  # the first BODY_KEPT bytes, decoded leniently


class Target:
    """An endpoint URL split once: where to dial, and the request head's fixed part."""

    __slots__ = ("host", "is_ip", "key", "path", "port", "prefix", "tls")

    def __init__(self, url: str) -> None:
        try:
            parsed = URL(url)
            port = parsed.port
        except (TypeError, ValueError) as exc:  # registration vetted it: a store's old row
            raise DeliveryFailed(f"not a valid URL ({exc})") from None
        if parsed.scheme not in ("http", "https") or not parsed.raw_host:
            raise DeliveryFailed("not an http(s) URL with a host")
        self.tls = parsed.scheme == "https"
        self.host = parsed.raw_host
        self.port = port or (443 if self.tls else 80)
        try:
            ipaddress.ip_address(self.host)
            self.is_ip = True
        except ValueError:
            self.is_ip = False
        self.key = (self.tls, self.host, self.port)
        self.path = parsed.raw_path or "/"  # the exact path an exempt socket is judged on
        target = parsed.raw_path_qs or "/"
        authority = f"[{self.host}]" if ":" in self.host else self.host
        if not parsed.is_default_port():
            authority += f":{self.port}"
        self.prefix = (f"POST {target} HTTP/1.1\r\nHost: {authority}\r\n"
                       f"Content-Type: application/json\r\nUser-Agent: {USER_AGENT}\r\n"
                       ).encode("ascii")


class _Conn(asyncio.Protocol):
    """One connection: a request at a time, its answer framed by llhttp into `waiter`."""

    __slots__ = ("_framed", "_parser", "_size", "body", "closed", "headers", "idle_since",
                 "peer", "received", "status", "transport", "uses", "waiter")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[bool] | None = None  # True: the connection may be reused
        self.closed = False
        self.uses = 0
        self.idle_since = 0.0
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self._size = 0
        self.received = 0  # bytes of the current answer
        self._framed = False  # its body has a length (Content-Length or chunked)

    # --- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass of it
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1])) if peer else None

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            self.abort()  # nothing was asked: a server talking out of turn is not reused
            return
        self.received += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not waiter.done():
                waiter.set_exception(DeliveryFailed(f"not a valid HTTP/1.x answer: {exc}"))
            self.abort()
            return
        if not waiter.done() and self.status == 0 and self.received > MAX_HEAD:
            waiter.set_exception(DeliveryFailed("answer head larger than 64 KiB"))
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if self.status >= 200 and exc is None and not self._framed:
            waiter.set_result(False)  # a body that ends with the connection
            return
        if self.status:
            text = "connection closed before the end of the answer"
        elif self.received:
            text = "connection closed in the middle of the answer head"
        else:
            text = "connection closed without an answer"
        waiter.set_exception(DeliveryFailed(f"{text}: {exc}" if exc else text))

    # --- llhttp callbacks ----------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower in KEPT_HEADERS:  # kept as the server spelled it, as the API shows them
            self.headers[name.decode("latin-1")] = value.strip().decode("latin-1")
        elif lower == b"content-length":
            self._framed = True
        elif lower == b"transfer-encoding":  # RFC 9112 6.3: chunked last, or until the close
            self._framed = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # interim (100 Continue, 103 Early Hints): the real answer follows
            self.headers, self._framed = {}, False
            return
        self.status = status

    def on_body(self, data: bytes) -> None:
        if self.status < 200:
            return
        room = BODY_KEPT - len(self.body)
        if room > 0:
            self.body += data[:room]
        self._size += len(data)
        waiter = self.waiter
        if self._size > BODY_KEPT + MAX_DRAIN and waiter is not None and not waiter.done():
            waiter.set_result(False)  # enough read: the rest is not worth the connection

    def on_message_complete(self) -> None:
        waiter = self.waiter
        if self.status >= 200 and waiter is not None and not waiter.done():
            waiter.set_result(self._parser.should_keep_alive())

    # --- use -----------------------------------------------------------------------------
    async def exchange(self, data: bytes, deadline: float) -> bool:
        """Send one request; True once its whole answer is read and the connection may
        carry another. TimeoutError (the connection aborted) if that is not before
        `deadline` on the loop's clock: a timer on the answer's future, which costs a
        fraction of an `asyncio.timeout` block around the exchange."""
        assert self.transport is not None
        self.status, self.received, self._size, self._framed = 0, 0, 0, False
        if self.headers:
            self.headers = {}
        if self.body:
            self.body = bytearray()
        loop = asyncio.get_running_loop()
        waiter = self.waiter = loop.create_future()
        timer = loop.call_at(deadline, self._expire, waiter)
        self.uses += 1
        self.transport.write(data)
        try:
            reusable: bool = await waiter
        finally:
            timer.cancel()
        return reusable

    @staticmethod
    def _expire(waiter: asyncio.Future[bool]) -> None:
        if not waiter.done():  # the caller aborts the connection
            waiter.set_exception(TimeoutError())

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


async def _system_resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class WebhookClient:
    """Pooled keep-alive POSTs for the dispatcher, guarded by `guard`. `resolve` looks host
    names up (tests give their own, as a DNS server under an attacker's control would)."""

    def __init__(self, guard: Guard, timeout: float, *, resolve: Resolve | None = None,
                 tls: ssl.SSLContext | None = None, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self._guard, self._timeout, self._idle_timeout = guard, timeout, idle_timeout
        self._resolve = resolve or _system_resolve
        self._tls = tls
        self._targets: dict[str, Target] = {}
        self._idle: dict[tuple[bool, str, int], list[_Conn]] = {}
        self._closed = False

    async def post(self, url: str, headers: bytes, body: bytes) -> Answer:
        """POST `body` to `url` with the extra header lines `headers` (each ending in CRLF)."""
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) > 100_000:
                self._targets.clear()
            target = self._targets[url] = Target(url)
        data = b"%b%bContent-Length: %d\r\n\r\n%b" % (target.prefix, headers, len(body), body)
        deadline = asyncio.get_running_loop().time() + self._timeout
        for retry in (True, False):
            conn = self._pooled(target)
            fresh = conn is None
            if conn is None:
                async with asyncio.timeout_at(deadline):
                    conn = await self._connect(target)
            self._check_path(conn, target)
            try:
                reusable = await conn.exchange(data, deadline)
            except DeliveryFailed:
                conn.abort()
                # a pooled connection the server closed while it idled: once more on a
                # fresh one (nothing of an answer came, so at most a duplicate delivery,
                # which the webhook-id lets the receiver recognise)
                if retry and not fresh and conn.received == 0:
                    continue
                raise
            except BaseException:  # cancelled or timed out mid-exchange: never reused
                conn.abort()
                raise
            answer = Answer(conn.status, conn.headers,
                            conn.body.decode("utf-8", "replace") if conn.body else "")
            conn.waiter = None
            if reusable and not conn.closed and not self._closed:
                self._keep(target, conn)
            else:
                conn.abort()
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def _pooled(self, target: Target) -> _Conn | None:
        idle = self._idle.get(target.key)
        oldest = time.monotonic() - self._idle_timeout
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.idle_since >= oldest:
                return conn
            conn.abort()
        return None

    def _keep(self, target: Target, conn: _Conn) -> None:
        idle = self._idle.get(target.key)
        if idle is None:
            idle = self._idle[target.key] = []
        if len(idle) >= MAX_IDLE:
            conn.abort()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def _check_path(self, conn: _Conn, target: Target) -> None:
        guard = self._guard
        if guard.allowed_sockets and not guard.allow_private:
            # every request, pooled connections included: an exempt socket takes its paths only
            kind = guard.exempt_path_refused(conn.peer, target.path)
            if kind is not None:
                conn.abort()
                raise UnsafeTarget(f"{target.host}:{target.port}{target.path} is refused by the "
                                   f"SSRF guard ({kind}; the exemption is for another path)")

    async def _connect(self, target: Target) -> _Conn:
        if target.is_ip:
            addresses = safe_addresses(self._guard, target.host, target.port, [target.host])
        else:
            try:
                found = await self._resolve(target.host, target.port)
            except (OSError, UnicodeError) as exc:
                raise DeliveryFailed(f"cannot resolve {target.host}: {exc}") from exc
            addresses = safe_addresses(self._guard, target.host, target.port, found)
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if target.tls else None
        error: OSError | None = None
        for address in addresses:
            try:
                _, conn = await loop.create_connection(
                    _Conn, address, target.port, ssl=tls,
                    server_hostname=target.host if tls is not None else None)
            except OSError as exc:
                error = exc
                continue
            return conn
        where = f"{target.host}:{target.port}"
        if isinstance(error, ConnectionRefusedError):
            raise DeliveryFailed(f"connection refused by {where}") from error
        if isinstance(error, ssl.SSLError):
            raise DeliveryFailed(f"TLS handshake with {where} failed: {error}") from error
        reason = error.strerror if error is not None and error.strerror else error
        raise DeliveryFailed(f"cannot connect to {where}: {reason}") from error

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
            self._tls.set_alpn_protocols(["http/1.1"])
        return self._tls

    @property
    def pooled(self) -> int:
        """Idle connections kept for reuse, over every pool."""
        return sum(len(idle) for idle in self._idle.values())

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.abort()
        self._idle.clear()

