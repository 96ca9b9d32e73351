"""Raw HTTP over a loopback socket, for what an HTTP client library refuses to send: non-ASCII
or oversized headers, a body cut short, headers never finished."""

from __future__ import annotations

import asyncio
import json
from typing import Any


def request_bytes(method: str, path: str, headers: list[tuple[str, bytes]],
                  body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n".encode()
    for name, value in headers:
        head += name.encode() + b": " + value + b"\r\n"
    if body:
        head += f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n".encode()
    return head + b"\r\n" + body


async def exchange(listen: str, raw: bytes) -> bytes:
    """Everything the server answers to `raw` until it closes the connection."""
    host, _, port = listen.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()


def parse_answer(answer: bytes) -> tuple[int, dict[str, str], Any]:
    """Status, headers (lower-case names) and the JSON body of a Connection: close answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, json.loads(body) if body else None


async def hang_up_mid_body(listen: str, path: str, headers: list[tuple[str, bytes]]) -> None:
    """Headers announcing 1,000 body bytes and `Expect: 100-continue`; once the server said
    100 Continue (its handler is reading the body), ten bytes and a hang-up."""
    host, _, port = listen.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n"
                     "Content-Type: application/json\r\nExpect: 100-continue\r\n".encode()
                     + b"".join(n.encode() + b": " + v + b"\r\n" for n, v in headers)
                     + b"\r\n")
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
        writer.write(b'{"type": "')
        await writer.drain()
    finally:
        writer.close()


async def never_finish_headers(listen: str) -> bytes:
    """A request line and half a header, then silence; what the server sends until it closes
    the connection (the caller bounds the wait)."""
    host, _, port = listen.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: te")
        await writer.drain()
        return await reader.read()
    finally:
        writer.close()
