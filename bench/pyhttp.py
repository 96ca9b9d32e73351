"""The pure-Python HTTP/1.1 response parser the probes used before llhttp (httptools), kept
as `bench.http_parse`'s reference so the figure that decided for llhttp can be re-measured.
It produces the same `Response` as `probes.httpmessage.ResponseParser`.
"""

from __future__ import annotations

import re

from probes.httpmessage import ParseError, Response

_MAX_HEAD = 64 * 1024
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE, _DONE = range(5)


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
