"""HTTP/1.1 messages without I/O: a URL split once, a request rendered to bytes once, and an
incremental response parser (feed bytes, get a `Response`). `probes.httpwire` moves the bytes.

The response framing is llhttp's (through httptools): `python -m bench.http_parse` measured
it 1.1x to 2.3x cheaper per response than the pure-Python parser it replaced (kept as
`bench.pyhttp`); per probe the difference is a few µs, lost in `bench.http_cpu`'s noise.
Valid HTTP/1.x answers read the same. llhttp refuses some malformed ones the old parser let
through: a repeated Content-Length (even an equal one), control characters in a header
value, a trailer line without a colon, a status below 100, a 101 answer (the probe asks for no
upgrade) and lines ended by a bare LF; each is now a protocol error.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import quote, urljoin, urlsplit

import httptools

USER_AGENT = "crypitor-monitor/0.1.0"
_MAX_HEAD = 64 * 1024
# headers that may carry credentials: dropped when a redirect leaves the origin
_PRIVATE = frozenset({"authorization", "cookie", "proxy-authorization"})


class Url:
    """An http(s) URL split once into what the connection and the request line need."""

    __slots__ = ("authority", "host", "is_ip", "port", "scheme", "target", "text")

    def __init__(self, text: str) -> None:
        text = text.strip()
        parts = urlsplit(text)
        self.scheme = parts.scheme.lower()
        if self.scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        if not parts.hostname:
            raise ValueError("has no host")
        if parts.username is not None:
            raise ValueError("credentials in the URL are not supported; send a header")
        self.host = parts.hostname  # lower-cased, IPv6 without brackets
        self.port = parts.port or (443 if self.scheme == "https" else 80)  # raises on bad port
        self.is_ip = is_ip_literal(self.host)
        host = f"[{self.host}]" if ":" in self.host else self.host.encode("idna").decode()
        default = self.port == (443 if self.scheme == "https" else 80)
        self.authority = host if default else f"{host}:{self.port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not target.isascii() or " " in target:
            target = quote(target, safe="!#$%&'()*+,/:;=?@[]~")
        self.target = target
        self.text = text


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class Request:
    """A request rendered to bytes once, so a probe repeating it pays nothing to build it."""

    __slots__ = ("body", "headers", "method", "url", "user_agent", "wire")

    def __init__(self, url: Url, method: str = "GET",
                 headers: Iterable[tuple[str, str]] = (), body: bytes = b"",
                 user_agent: str = USER_AGENT) -> None:
        self.url, self.method, self.body = url, method, body
        self.user_agent = user_agent
        self.headers = tuple(headers)
        names = {name.lower() for name, _ in self.headers}
        lines = [f"{method} {url.target} HTTP/1.1"]
        if "host" not in names:
            lines.append(f"Host: {url.authority}")
        if "user-agent" not in names:
            lines.append(f"User-Agent: {user_agent}")
        if "accept" not in names:
            lines.append("Accept: */*")
        for name, value in self.headers:
            if "\r" in value or "\n" in value or not name.isprintable() or ":" in name:
                raise ValueError(f"header {name!r} would break the request")
            lines.append(f"{name}: {value}")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: close\r\n\r\n")
        self.wire = "\r\n".join(lines).encode("latin-1") + body  # ValueError if not latin-1

    def redirect(self, location: str, status: int) -> Request:
        """The request a `status` answer with `location` asks for (RFC 9110 15.4)."""
        url = Url(urljoin(self.url.text, location))
        method, body = self.method, self.body
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method, body = "GET", b""
        headers = self.headers
        if (url.scheme, url.host, url.port) != (self.url.scheme, self.url.host, self.url.port):
            headers = tuple(h for h in headers if h[0].lower() not in _PRIVATE | {"host"})
        return Request(url, method, headers, body, self.user_agent)


def user_agent(location: str, product: str = USER_AGENT) -> str:
    """`product`, with ` (location=<location>)` when probing from a cluster's location, so
    a target's own logs tell where a probe came from ("": no location, `product` alone)."""
    return f"{product} (location={location})" if location else product


class ParseError(ValueError):
    """The bytes are not an HTTP/1.x response or their framing is garbled."""


class Response:
    __slots__ = ("body", "body_bytes", "headers", "peer_cert", "reason", "status", "truncated")

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]]) -> None:
        self.status, self.reason = status, reason
        self.headers = headers  # (lower-cased name, value), in order, duplicates kept
        self.body = b""
        self.body_bytes = 0  # every body byte received, also those past the stored cap
        self.truncated = False
        self.peer_cert: bytes | None = None  # DER of the server's leaf certificate (https)

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case), or None."""
        name = name.lower()
        return next((v for n, v in self.headers if n == name), None)


class ResponseParser:
    """Reads one response. `feed` and `eof` return True once it is complete.

    llhttp (through httptools) does the framing; this class keeps what a probe needs on top:
    interim 1xx answers skipped (a 101 too, as a probe asks for no upgrade), answers to
    HEAD ended after the head, a body read until the connection's end completed by `eof`, a
    64 KiB bound on the head and the stored body capped at `max_body`. llhttp is the
    parser's callback target (the `on_*` methods), which makes a cycle with `_parser`: it is
    broken as soon as the response is complete or refused."""

    __slots__ = ("_body", "_done", "_head", "_head_only", "_headers", "_in_head", "_max",
                 "_parser", "_reason", "_until_close", "response")

    def __init__(self, head_only: bool = False, max_body: int = 1 << 20) -> None:
        self._head_only, self._max = head_only, max_body  # head_only: answer to HEAD
        self._parser: httptools.HttpResponseParser | None = self._new_parser()
        self._headers: list[tuple[str, str]] = []  # of the head being read
        self._reason = b""
        self._body = bytearray()
        self._head = 0  # bytes fed since the last interim answer, before the final head
        self._in_head = False  # a head has begun and is not complete
        self._done = False
        self._until_close = False  # the body ends with the connection
        self.response: Response | None = None  # set once the head is parsed

    def _new_parser(self) -> httptools.HttpResponseParser:
        parser = httptools.HttpResponseParser(self)
        # as before llhttp: Transfer-Encoding overrides Content-Length (RFC 9112 6.3), spaces
        # may follow a chunk size, and any HTTP/1.x version is read (HTTP/2+ is refused below)
        parser.set_dangerous_leniencies(lenient_chunked_length=True, lenient_version=True,
                                        lenient_spaces_after_chunk_size=True)
        return parser

    @property
    def started(self) -> bool:
        return self._in_head or self.response is not None

    @property
    def complete(self) -> bool:
        return self._done

    def feed(self, data: bytes) -> bool:
        parser = self._parser
        if parser is None:  # complete (or refused): what follows is not ours to read
            return self._done
        if self.response is None:
            self._head += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if not self._done:  # else: bytes after the response, which we do not read
                self._parser = None
                cause = exc.__context__  # what a callback raised
                if isinstance(cause, ParseError):
                    raise cause from None
                raise ParseError(f"not a valid HTTP/1.x response: {exc}") from exc
        if self._done:
            self._parser = None
        elif self.response is None and self._head > _MAX_HEAD:
            self._parser = None
            raise ParseError("response head larger than 64 KiB")
        return self._done

    def eof(self) -> bool:
        """The peer closed: that ends a body delimited by the connection's end."""
        if self._until_close and not self._done:
            self._finish()
        self._parser = None
        return self._done

    def on_message_begin(self) -> None:
        self._in_head = True

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode().lower(), value.strip().decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self._done:
            return
        assert self._parser is not None
        headers, reason = self._headers, self._reason
        self._headers, self._reason, self._in_head = [], b"", False
        version = self._parser.get_http_version()
        if not version.startswith("1."):
            raise ParseError(f"not an HTTP/1.x response: HTTP/{version}")
        status = self._parser.get_status_code()
        if status < 100:
            raise ParseError(f"bad status code {status:03d}")
        if status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one
            self._head = 0  # follows; llhttp refuses 101, which asks for a protocol switch
            return
        response = self.response = Response(status, reason.decode("latin-1"), headers)
        if self._head_only:  # llhttp cannot know the request was HEAD (204 and 304 it knows)
            self._finish()
            return
        coding = response.header("transfer-encoding")
        if coding is not None:  # RFC 9112 6.3: it overrides Content-Length
            self._until_close = coding.lower().rsplit(",", 1)[-1].strip() != "chunked"
        else:
            self._until_close = all(n != "content-length" for n, _ in headers)

    def on_body(self, data: bytes) -> None:
        response = self.response
        if self._done or response is None:
            return
        response.body_bytes += len(data)
        room = self._max - len(self._body)
        if room > 0:
            self._body += data[:room]
        if len(data) > room:
            response.truncated = True

    def on_message_complete(self) -> None:
        if self.response is not None and not self._done:
            self._finish()

    def _finish(self) -> None:
        self._done = True
        response = self.response
        assert response is not None
        response.body = bytes(self._body)
