"""What both HTTP servers (the service API and the monitor's) do the same way at the edge:
bearer keys checked for any header a client can send, failed keys throttled per address,
clients that never finish their headers dropped, and malformed or oversized requests
answered JSON 400/431 without a byte of them echoed or logged. On shutdown both drain the
same way: `/readyz` answers 503 at once while every request is still served, each answer with
`Connection: close`, so a load balancer takes the process out before the listener closes.

aiohttp has no header-read timeout of its own; its keep-alive timer is armed when a
connection opens and re-armed after each response, and closes the connection when no
complete request arrived by then, which is exactly a header-read timeout (plus the idle one).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

__all__ = ["AUTH_BURST", "AUTH_WINDOW", "FRONT", "HEADER_TIMEOUT", "AuthThrottle", "Front",
           "Handler", "HardenedRunner", "bearer_matches", "start_server"]

log = logging.getLogger(__name__)

HEADER_TIMEOUT = 10.0  # seconds a connection has to finish a request's headers
AUTH_BURST = 20  # failed keys an address may send ...
AUTH_WINDOW = 10.0  # ... per this many seconds before it is answered 429
MAX_TRACKED = 10_000  # addresses remembered at most; the least recently failing go first


def bearer_matches(header: str, keys: Sequence[bytes]) -> bool:
    """Whether an `Authorization` value is `Bearer <one of keys>`, for any value at all
    (aiohttp hands non-ASCII bytes over as surrogate escapes). Every key is compared in
    constant time, so timing does not tell which one came close."""
    token = (header[7:].encode("utf-8", "surrogateescape") if header.startswith("Bearer ")
             else b"")
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(token, key)
    return ok


class AuthThrottle:
    """A token bucket of failed authentications per client address: `burst` failures, refilled
    at `burst` per `window` seconds. Only failures spend tokens, so a client holding a valid
    key is never slowed; memory stays bounded by `max_tracked` addresses."""

    def __init__(self, burst: int = AUTH_BURST, window: float = AUTH_WINDOW,
                 max_tracked: int = MAX_TRACKED,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._burst = float(burst)
        self._rate = burst / window  # tokens per second
        self._max = max_tracked
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def _tokens(self, address: str, now: float) -> float:
        tokens, at = self._buckets.get(address, (self._burst, now))
        return min(self._burst, tokens + (now - at) * self._rate)

    def retry_after(self, address: str) -> int:
        """Whole seconds until `address` may fail again; 0 when it may now."""
        tokens = self._tokens(address, self._clock())
        return 0 if tokens >= 1 else max(1, math.ceil((1 - tokens) / self._rate))

    def refuse(self, header: str, keys: Sequence[bytes], address: str) -> int | None:
        """The answer to a request's `Authorization` value: None for a valid key (never
        throttled); 0 for a 401; or, once `address` sent too many wrong keys, the seconds
        to put in a 429's Retry-After. A request with no key at all is no guess: a 401,
        neither counted nor throttled."""
        if bearer_matches(header, keys):
            return None
        if not header:
            return 0
        wait = self.retry_after(address)
        if not wait:
            self.failed(address)
        return wait

    def failed(self, address: str) -> None:
        now = self._clock()
        self._buckets[address] = (self._tokens(address, now) - 1, now)
        self._buckets.move_to_end(address)
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)


class _QuietRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, except for requests its parser refuses: its own answer
    quotes the first 100 bytes of the offending line (an API key, say) and logs them at
    ERROR with a traceback."""

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        log.debug("refused a malformed request from %s (%s)", request.remote,
                  type(exc).__name__)
        if isinstance(exc, LineTooLong):
            resp = web.json_response({"error": "a request line or header is too large",
                                      "field": None}, status=431)
        else:
            resp = web.json_response({"error": "malformed HTTP request", "field": None},
                                     status=400)
        resp.force_close()
        return resp


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Front = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
# What an application may set to be run around its every request, routing included, in place
# of a middleware: aiohttp runs each middleware, and one more of its own once there is any,
# as a layer of coroutine calls per request, which the service's ingest path cannot afford.
# Called as `front(request, handler)`, it answers by itself or awaits `handler(request)`;
# errors of routing (404, 405) are raised from that await, so the front can word them.
FRONT: web.AppKey[Front] = web.AppKey("front")


class _QuietServer(web.Server):
    def __init__(self, server: web.Server, handler_kwargs: dict[str, Any],
                 handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]) -> None:
        super().__init__(handler, request_factory=server.request_factory,
                         handler_cancellation=server.handler_cancellation, **handler_kwargs)
        self._handler_kwargs = handler_kwargs

    def __call__(self) -> web.RequestHandler:
        return _QuietRequestHandler(self, loop=asyncio.get_running_loop(),
                                    **self._handler_kwargs)


class HardenedRunner(web.AppRunner):
    """An AppRunner without access log whose connections are closed when they have not
    finished a request's headers `header_timeout` seconds after opening or after the previous
    response, and whose parse errors are answered quietly.

    `drain()` starts a shutdown without refusing anyone: from then on `/readyz` answers 503
    and every answer carries `Connection: close`; `close(timeout)` then stops listening and
    gives requests in progress `timeout` seconds."""

    def __init__(self, app: web.Application, header_timeout: float = HEADER_TIMEOUT) -> None:
        super().__init__(app, handle_signals=False)
        self._handler_kwargs: dict[str, Any] = {"access_log": None,
                                                "keepalive_timeout": header_timeout}
        self.draining = False
        app.on_response_prepare.append(self._closing)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # the application's handler, routing included
        return _QuietServer(server, self._handler_kwargs,
                            self.entry(cast(Handler, server.request_handler)))

    def entry(self, handle: Handler) -> Callable[[web.BaseRequest],
                                                 Awaitable[web.StreamResponse]]:
        """What the server calls for each request: the application's `handle` inside its
        FRONT, and while draining `/readyz` answered 503 and every answer closing."""
        front = self.app.get(FRONT)

        def serve(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
            # no coroutine of its own: the request's one is the front's or the application's
            req = cast(web.Request, request)  # the application's request factory made it
            if self.draining:
                return self._serve_draining(req, handle, front)
            return handle(req) if front is None else front(req, handle)
        return serve

    def drain(self) -> None:
        self.draining = True

    async def close(self, timeout: float) -> None:
        """Stop listening, close idle connections, give requests in progress `timeout`
        seconds, then cancel what is left."""
        self._shutdown_timeout = timeout
        await self.cleanup()

    async def _serve_draining(self, request: web.Request, handle: Handler,
                              front: Front | None) -> web.StreamResponse:
        if request.path == "/readyz":
            response: web.StreamResponse = web.json_response({"status": "draining"},
                                                             status=503)
        else:
            response = await (handle(request) if front is None else front(request, handle))
        if not response.prepared:  # an answer made before routing gets no prepare signal
            await self._closing(request, response)  # (one made after: twice, to no effect)
        return response

    async def _closing(self, _request: web.Request, response: web.StreamResponse) -> None:
        # the headers are already prepared: the flag ends the connection, the header says so
        if self.draining:
            response.force_close()
            response.headers["Connection"] = "close"


async def start_server(app: web.Application, listen: str,
                       header_timeout: float = HEADER_TIMEOUT) -> HardenedRunner:
    """`app` served on `listen` ("host:port", IPv6 hosts in brackets); cleanup() stops it."""
    runner = HardenedRunner(app, header_timeout)
    await runner.setup()
    host, _, port = listen.rpartition(":")
    try:
        await web.TCPSite(runner, host.strip("[]"), int(port)).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
