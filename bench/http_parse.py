"""HTTP/1.1 response parsing: the probes' parser on llhttp (`probes.httpmessage`, through
`httptools.HttpResponseParser`, the parser under uvicorn) against the pure-Python parser it
replaced (`bench.pyhttp`), in µs per response, on the answers a probe typically reads. Each
parser is built per response, fed the bytes as they would arrive, and produces the same
`Response`: status, reason, lower-cased headers and the body under the size cap.

    .venv/bin/python -m bench.http_parse [--seconds 1]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

from bench import pyhttp
from probes.httpmessage import Response, ResponseParser

NGINX_HEAD = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.26.3\r\nDate: Mon, 02 Jun 2025 10:00:00 GMT\r\n"
              b"Content-Type: text/plain\r\nConnection: close\r\n")
JSON = b'{"jsonrpc":"2.0","id":1,"result":"0x1b4a3c2"}'
# (name, the pieces in which the answer arrives)
CASES: list[tuple[str, list[bytes]]] = [
    ("small 200 with headers",
     [NGINX_HEAD + b"Content-Length: 3\r\n\r\nok\n"]),
    ("chunked JSON-RPC answer",
     [NGINX_HEAD.replace(b"text/plain", b"application/json")
      + b"Transfer-Encoding: chunked\r\n\r\n"
      + b"%x\r\n%s\r\n" % (20, JSON[:20]), b"%x\r\n%s\r\n0\r\n\r\n" % (len(JSON) - 20, JSON[20:])]),
    ("4 KiB body",
     [NGINX_HEAD.replace(b"text/plain", b"text/html") + b"Content-Length: 4096\r\n\r\n"
      + b"x" * 1000, b"x" * 3096]),
]


Parser = Callable[[], ResponseParser | pyhttp.ResponseParser]


def parse(new: Parser, pieces: Sequence[bytes]) -> Response | None:
    parser = new()
    for piece in pieces:
        parser.feed(piece)
    return parser.response


def llhttp(pieces: Sequence[bytes]) -> Response | None:
    return parse(ResponseParser, pieces)


def pure_python(pieces: Sequence[bytes]) -> Response | None:
    return parse(pyhttp.ResponseParser, pieces)


def per_call(fn: Callable[[Sequence[bytes]], object], pieces: Sequence[bytes],
             seconds: float) -> float:
    """The best of five µs-per-call figures, each over about seconds / 5."""
    n = 1
    while True:  # as many calls as take a fiftieth of the budget
        start = time.perf_counter()
        for _ in range(n):
            fn(pieces)
        if time.perf_counter() - start > seconds / 50:
            break
        n *= 2
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n * 10):
            fn(pieces)
        best = min(best, (time.perf_counter() - start) / (n * 10))
    return best * 1e6


def same(a: Response | None, b: Response | None) -> bool:
    return a is not None and b is not None and (a.status, a.reason, a.headers, a.body) == \
        (b.status, b.reason, b.headers, b.body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="per case and parser")
    args = ap.parse_args()
    print(f"{'response':26}{'pure Python µs':>16}{'llhttp µs':>11}{'ratio':>8}")
    for name, pieces in CASES:
        assert same(pure_python(pieces), llhttp(pieces)), name
        before = per_call(pure_python, pieces, args.seconds)
        now = per_call(llhttp, pieces, args.seconds)
        print(f"{name:26}{before:>16.2f}{now:>11.2f}{before / now:>7.2f}x")
    print("\nratio: µs per response of the pure-Python parser over llhttp's (above 1: llhttp "
          "is cheaper)")


if __name__ == "__main__":
    main()
