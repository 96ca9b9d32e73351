"""The JSON error answers of the monitor's listeners: `{"error", "field"}`, and the middleware
that turns whatever a handler raises into one, never a stack trace."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error(status: int, message: str, field: str | None = None,
          headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "field": field}, status=status,
                             headers=headers)


def json_errors(log: logging.Logger, headers: dict[str, str] | None = None,
                hangup_field: str | None = None,
                on_hangup: Callable[[web.Request], None] | None = None) -> Middleware:
    """A middleware answering aiohttp's 4xx/5xx exceptions, a client that hung up (400,
    `hangup_field`; `on_hangup` is told) and any other exception (500, logged to `log` with
    its traceback) as JSON errors carrying `headers`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return error(exc.status, exc.reason, headers=headers)
        except ConnectionError:  # the client hung up: nobody to answer, nothing to trace
            if on_hangup is not None:
                on_hangup(request)
            return error(400, "the client closed the connection", hangup_field, headers)
        except Exception:  # never a stack trace to the client; the log keeps it
            log.exception("error serving %s %s", request.method, request.path)
            return error(500, "internal error", headers=headers)

    return middleware
