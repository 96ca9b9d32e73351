"""The status page's routes: `/`, `/api/v1/status`, the badges and the feed, mounted on the
monitor's own server and, with `[status_page].listen`, alone on a second one (`public_app`), so
the rest of the API need not be published. Every answer carries the strict
Content-Security-Policy of the page; badges are cacheable for 60 s.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from monitor.runtime import WINDOWS
from monitor.web.badges import state_badge, uptime_badge
from monitor.web.errors import error, json_errors
from monitor.web.feed import render_feed
from monitor.web.status_data import StatusBoard
from monitor.web.statuspage import CSP, render_status_page

log = logging.getLogger(__name__)
BADGE_MAX_AGE = 60
SECURITY = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}
PATHS = ("/", "/api/v1/status", "/api/v1/targets/{name}/badge.svg",
         "/api/v1/targets/{name}/uptime/{window}/badge.svg", "/feed.atom")


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    return error(status, message, field, SECURITY)


class StatusRoutes:
    def __init__(self, board: StatusBoard) -> None:
        self.board = board

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get(PATHS[0], self.page)
        router.add_get(PATHS[1], self.status)
        router.add_get(PATHS[2], self.state_badge)
        router.add_get(PATHS[3], self.uptime_badge)
        router.add_get(PATHS[4], self.feed)

    def public_app(self) -> web.Application:
        """The second listener's app: these routes only (anything else 404, JSON), GET and
        HEAD only, never a stack trace."""
        app = web.Application(middlewares=[json_errors(log, SECURITY)], client_max_size=1024)
        self.add_routes(app.router)
        return app

    async def page(self, _request: web.Request) -> web.Response:
        html = await asyncio.to_thread(render_status_page, await self.board.status())
        return web.Response(text=html, content_type="text/html", headers=SECURITY)

    async def status(self, _request: web.Request) -> web.Response:
        return web.json_response(await self.board.status(), headers=SECURITY)

    async def feed(self, _request: web.Request) -> web.Response:
        body = render_feed(await self.board.status())
        return web.Response(text=body, content_type="application/atom+xml", headers=SECURITY)

    def _badge(self, svg: str) -> web.Response:
        return web.Response(body=svg.encode(), content_type="image/svg+xml",
                            headers={**SECURITY, "Cache-Control": f"max-age={BADGE_MAX_AGE}"})

    async def state_badge(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        state = self.board.target(name)
        if state is None:
            return _error(404, f"no target named {name!r}", "name")
        return self._badge(state_badge(name, await self.board.state_of(state)))

    async def uptime_badge(self, request: web.Request) -> web.Response:
        name, window = request.match_info["name"], request.match_info["window"]
        if self.board.target(name) is None:
            return _error(404, f"no target named {name!r}", "name")
        if window not in WINDOWS:
            return _error(404, f"no uptime window {window!r} (there are "
                          + ", ".join(WINDOWS) + ")", "window")
        uptime = (await self.board.uptime_of(name)).get(window)
        return self._badge(uptime_badge(name, window, uptime))
