"""HTTP/1.1 messages without I/O: a URL split once, a request rendered to bytes once, and an
incremental response parser (feed bytes, get a `Response`). `probes.httpwire` moves the bytes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import quote, urljoin, urlsplit

USER_AGENT = "crypitor-monitor/0.1.0"
_MAX_HEAD = 64 * 1024
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE, _DONE = range(5)
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

    __slots__ = ("body", "headers", "method", "url", "wire")

    def __init__(self, url: Url, method: str = "GET",
                 headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> None:
        self.url, self.method, self.body = url, method, body
        self.headers = tuple(headers)
        names = {name.lower() for name, _ in self.headers}
        lines = [f"{method} {url.target} HTTP/1.1"]
        if "host" not in names:
            lines.append(f"Host: {url.authority}")
        if "user-agent" not in names:
            lines.append(f"User-Agent: {USER_AGENT}")
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
        return Request(url, method, headers, body)


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
    """Reads one response. `feed` and `eof` return True once it is complete."""

    __slots__ = ("_body", "_buf", "_head_only", "_left", "_max", "_state", "_trailers",
                 "response")

    def __init__(self, head_only: bool = False, max_body: int = 1 << 20) -> None:
        self._head_only, self._max = head_only, max_body  # head_only: answer to HEAD
        self._buf = bytearray()
        self._body = bytearray()
        self._state = _HEAD
        self._left = 0  # body bytes (Content-Length) or chunk bytes + CRLF still to come
        self._trailers = False
        self.response: Response | None = None  # set once the head is parsed

    @property
    def started(self) -> bool:
        return bool(self._buf) or self.response is not None

    @property
    def complete(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> bool:
        state = self._state
        if state == _LENGTH:  # the hot path: a body of known length
            if len(data) >= self._left:
                self._keep(data[: self._left])
                self._finish()
            else:
                self._keep(data)
                self._left -= len(data)
        elif state == _HEAD:
            self._buf += data
            self._read_head()
        elif state == _CHUNKED:
            self._buf += data
            self._read_chunks()
        elif state == _UNTIL_CLOSE:
            self._keep(data)
        return self._state == _DONE

    def eof(self) -> bool:
        """The peer closed: that ends a body delimited by the connection's end."""
        if self._state == _UNTIL_CLOSE:
            self._finish()
        return self._state == _DONE

    def _read_head(self) -> None:
        buf = self._buf
        while self._state == _HEAD:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if not b"HTTP/".startswith(bytes(buf[:5])):  # fail fast on a non-HTTP peer
                    raise ParseError(f"not an HTTP response: {bytes(buf[:60])!r}")
                if len(buf) > _MAX_HEAD:
                    raise ParseError("response head larger than 64 KiB")
                return
            head = bytes(buf[:end])
            del buf[: end + 4]
            self._parse_head(head)
        if self._state == _CHUNKED:
            self._read_chunks()
        elif buf:
            rest = bytes(buf)
            buf.clear()
            if self._state != _DONE:
                self.feed(rest)

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        code, _, reason = rest.partition(b" ")
        if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise ParseError(f"bad status line {bytes(lines[0][:80])!r}")
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                raise ParseError(f"bad header line {bytes(line[:80])!r}")
            headers.append((name.decode().lower(), value.strip().decode("latin-1")))
        status = int(code)
        if status < 200:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        response = self.response = Response(status, reason.decode("latin-1"), headers)
        if self._head_only or status in (204, 304):
            self._finish()
            return
        coding = response.header("transfer-encoding")
        lengths = {v for n, v in headers if n == "content-length"}
        if coding is not None:  # RFC 9112 6.3: it overrides Content-Length
            chunked = coding.lower().rsplit(",", 1)[-1].strip() == "chunked"
            self._state = _CHUNKED if chunked else _UNTIL_CLOSE
        elif lengths:
            length = lengths.pop()
            if lengths or not length.isascii() or not length.isdigit():
                raise ParseError(f"bad Content-Length {length!r}")
            self._left = int(length)
            self._state = _LENGTH
            if not self._left:
                self._finish()
        else:
            self._state = _UNTIL_CLOSE

    def _read_chunks(self) -> None:
        buf, pos = self._buf, 0
        try:
            while self._state == _CHUNKED:
                if self._left > 2:  # inside a chunk's data
                    data = bytes(buf[pos: pos + self._left - 2])
                    self._keep(data)
                    pos += len(data)
                    self._left -= len(data)
                if self._left:  # the CRLF that closes a chunk's data
                    if len(buf) - pos < self._left:
                        return
                    if buf[pos: pos + 2] != b"\r\n":
                        raise ParseError("chunk data not followed by CRLF")
                    pos, self._left = pos + 2, 0
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    if len(buf) - pos > 4096:
                        raise ParseError("chunk size line too long")
                    return
                line, pos = bytes(buf[pos:eol]), eol + 2
                if self._trailers:
                    if not line:
                        self._finish()
                    continue
                size = line.split(b";", 1)[0].strip()
                if not _CHUNK_SIZE.fullmatch(size):
                    raise ParseError(f"bad chunk size line {line[:40]!r}")
                self._left = int(size, 16)
                self._trailers = not self._left  # the last chunk: trailers, then a blank line
                self._left += 2 if self._left else 0
        finally:
            del buf[:pos]

    def _keep(self, data: bytes) -> None:
        response = self.response
        assert response is not None
        response.body_bytes += len(data)
        room = self._max - len(self._body)
        if room > 0:
            self._body += data[:room]
        if len(data) > room:
            response.truncated = True

    def _finish(self) -> None:
        self._state = _DONE
        response = self.response
        assert response is not None
        response.body = bytes(self._body)
