"""A fake Grafana HTTP API on a real local aiohttp server, following Grafana's documented
(legacy `/api`) answers for what the dashboard push uses: health, folders, data sources,
dashboards with versions, and search.

Bearer tokens carry a role the way service-account tokens do: `token` is an Admin,
`editor_token` may write folders and dashboards but not data sources, `viewer_token` may only
read. Every accepted write is recorded, and a test may script failures:

    fake.fail(500)                                           # the next request, whatever it is
    fake.fail(503, path="/api/health", times=3)
    fake.fail(412, method="POST", path="/api/dashboards/db",
              body={"message": "The dashboard has been changed by someone else",
                    "status": "version-mismatch"})
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest_asyncio
from aiohttp import web

from tests.support.web import serve

JSON = dict[str, Any]
VERSION = "11.3.0"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class ApiError(Exception):
    """An error answer: `{"message": ...}`, plus Grafana's `status` word when it gives one."""

    def __init__(self, code: int, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.body: JSON = {"message": message} if status is None else {"message": message,
                                                                         "status": status}


@dataclass(frozen=True)
class Write:
    """One write the fake accepted."""

    method: str
    path: str
    body: JSON


@dataclass
class Forced:
    """A scripted answer for the next `times` requests matching method and path."""

    status: int
    body: JSON
    method: str = "*"
    path: str | None = None  # None: any path
    times: int = 1
    delay: float = 0.0  # seconds before answering (for client timeouts)


@dataclass
class StoredDashboard:
    model: JSON  # as Grafana returns it: with id, uid and version
    folder_uid: str
    created: str
    updated: str
    versions: list[JSON] = field(default_factory=list)  # every saved model, oldest first


class FakeGrafana:
    """The fake's state; `serve_fake_grafana()` puts it behind a server and sets `url`."""

    def __init__(self, token: str | None = None) -> None:
        self.url = ""
        self.token = token or f"glsa_{secrets.token_urlsafe(24)}_admin"
        self.editor_token = f"glsa_{secrets.token_urlsafe(24)}_editor"
        self.viewer_token = f"glsa_{secrets.token_urlsafe(24)}_viewer"
        self.roles = {self.token: "Admin", self.editor_token: "Editor",
                      self.viewer_token: "Viewer"}
        self.folders: dict[str, JSON] = {}
        self.datasources: dict[str, JSON] = {}
        self.dashboards: dict[str, StoredDashboard] = {}
        self.writes: list[Write] = []
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self.forced: list[Forced] = []
        self._ids = itertools.count(1)

    # ---- what tests use ----

    def fail(self, status: int, *, method: str = "*", path: str | None = None, times: int = 1,
             body: JSON | None = None, delay: float = 0.0) -> None:
        message = {401: "Invalid API key", 403: "Access denied", 404: "Not found"}.get(
            status, "Internal Server Error" if status >= 500 else f"Error {status}")
        self.forced.append(Forced(status, body or {"message": message}, method.upper(), path,
                                  times, delay))

    def dashboard_saves(self) -> list[JSON]:
        return [w.body for w in self.writes if w.path == "/api/dashboards/db"]

    def version(self, uid: str) -> int:
        return int(self.dashboards[uid].model["version"])

    def add_folder(self, uid: str, title: str) -> None:
        self.folders[uid] = self._folder(uid, title)

    def edit_dashboard(self, uid: str, **changes: Any) -> None:
        """Someone edits the dashboard in Grafana's UI: a new version."""
        stored = self.dashboards[uid]
        stored.model = {**stored.model, **changes, "version": stored.model["version"] + 1}
        stored.versions.append(stored.model)

    # ---- the API ----

    def routes(self) -> list[web.RouteDef]:
        def r(method: str, path: str, handler: Callable[[web.Request], Awaitable[Any]],
              role: str | None) -> web.RouteDef:
            async def run(request: web.Request) -> web.Response:
                return await self._serve(request, handler, role)
            return web.route(method, path, run)

        return [
            r("GET", "/api/health", self._health, None),
            r("GET", "/api/folders", self._list_folders, "Viewer"),
            r("GET", "/api/folders/{uid}", self._get_folder, "Viewer"),
            r("POST", "/api/folders", self._create_folder, "Editor"),
            r("GET", "/api/datasources/uid/{uid}", self._get_datasource, "Viewer"),
            r("POST", "/api/datasources", self._create_datasource, "Admin"),
            r("PUT", "/api/datasources/uid/{uid}", self._update_datasource, "Admin"),
            r("POST", "/api/dashboards/db", self._save_dashboard, "Editor"),
            r("GET", "/api/dashboards/uid/{uid}", self._get_dashboard, "Viewer"),
            r("GET", "/api/search", self._search, "Viewer"),
        ]

    async def _serve(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[Any]],
                     role: str | None) -> web.Response:
        self.requests.append((request.method, request.path))
        try:
            await self._forced(request)
            if role is not None:
                self._authorize(request, role)
            result = await handler(request)
        except ApiError as exc:
            return web.json_response(exc.body, status=exc.code)
        if request.method in WRITE_METHODS:
            self.writes.append(Write(request.method, request.path, await request.json()))
        return web.json_response(result)

    async def _forced(self, request: web.Request) -> None:
        for forced in self.forced:
            if (forced.method in ("*", request.method)
                    and forced.path in (None, request.path)):
                forced.times -= 1
                if forced.times <= 0:
                    self.forced.remove(forced)
                await asyncio.sleep(forced.delay)
                exc = ApiError(forced.status, "")
                exc.body = dict(forced.body)
                raise exc

    def _authorize(self, request: web.Request, needed: str) -> None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise ApiError(401, "Unauthorized")
        have = self.roles.get(header.removeprefix("Bearer "))
        if have is None:
            raise ApiError(401, "Invalid API key")
        rank = {"Viewer": 0, "Editor": 1, "Admin": 2}
        if rank[have] < rank[needed]:
            raise ApiError(403, "Access denied")

    async def _health(self, _: web.Request) -> JSON:
        return {"commit": "0123abcd", "database": "ok", "version": VERSION}

    async def _list_folders(self, _: web.Request) -> list[JSON]:
        return [{"id": f["id"], "uid": f["uid"], "title": f["title"]}
                for f in self.folders.values()]

    async def _get_folder(self, request: web.Request) -> JSON:
        folder = self.folders.get(request.match_info["uid"])
        if folder is None:
            raise ApiError(404, "folder not found", status="not-found")
        return folder

    async def _create_folder(self, request: web.Request) -> JSON:
        body = await _body(request)
        title = body.get("title")
        if not isinstance(title, str) or not title.strip():
            raise ApiError(400, "folder title cannot be empty")
        uid = body.get("uid") or secrets.token_hex(7)
        if uid in self.folders:
            raise ApiError(409, "a folder/dashboard with the same uid already exists")
        if any(f["title"] == title for f in self.folders.values()):
            raise ApiError(409, "a folder or dashboard in the general folder with the same "
                                "name already exists")
        self.folders[uid] = self._folder(uid, title)
        return self.folders[uid]

    def _folder(self, uid: str, title: str) -> JSON:
        now = _now()
        return {"id": next(self._ids), "uid": uid, "title": title,
                "url": f"/dashboards/f/{uid}/{_slug(title)}", "hasAcl": False,
                "canSave": True, "canEdit": True, "canAdmin": True, "canDelete": True,
                "createdBy": "sa-crypitor", "created": now, "updatedBy": "sa-crypitor",
                "updated": now, "version": 1}

    async def _get_datasource(self, request: web.Request) -> JSON:
        ds = self.datasources.get(request.match_info["uid"])
        if ds is None:
            raise ApiError(404, "Data source not found")
        return ds

    async def _create_datasource(self, request: web.Request) -> JSON:
        body = await _body(request)
        for key in ("name", "type", "access"):
            if not isinstance(body.get(key), str) or not body[key]:
                raise ApiError(400, f"bad request data: {key} is required")
        uid = body.get("uid") or secrets.token_hex(7)
        if any(d["name"] == body["name"] for d in self.datasources.values()):
            raise ApiError(409, "data source with the same name already exists")
        if uid in self.datasources:
            raise ApiError(409, "data source with the same uid already exists")
        ds = {"id": next(self._ids), "uid": uid, "orgId": 1, "name": body["name"],
              "type": body["type"], "typeLogoUrl": "", "access": body["access"],
              "url": body.get("url", ""), "user": "", "database": "",
              "basicAuth": bool(body.get("basicAuth")), "basicAuthUser": "",
              "withCredentials": False, "isDefault": not self.datasources,
              "jsonData": body.get("jsonData") or {}, "secureJsonFields": {},
              "version": 1, "readOnly": False}
        self.datasources[uid] = ds
        return {"datasource": ds, "id": ds["id"], "message": "Datasource added",
                "name": ds["name"]}

    async def _update_datasource(self, request: web.Request) -> JSON:
        ds = await self._get_datasource(request)
        body = await _body(request)
        keep = {"id": ds["id"], "uid": ds["uid"], "orgId": 1, "version": ds["version"] + 1}
        ds.update({**body, **keep})
        return {"datasource": ds, "id": ds["id"], "message": "Datasource updated",
                "name": ds["name"]}

    async def _save_dashboard(self, request: web.Request) -> JSON:
        body = await _body(request)
        dashboard = body.get("dashboard")
        if not isinstance(dashboard, dict):
            raise ApiError(400, "bad request data")
        title = dashboard.get("title")
        if not isinstance(title, str) or not title.strip():
            raise ApiError(400, "Dashboard title cannot be empty", status="empty-name")
        uid = dashboard.get("uid") or secrets.token_hex(7)
        if len(uid) > 40:
            raise ApiError(400, "uid too long, max 40 characters", status="uid-too-long")
        folder_uid = body.get("folderUid") or ""
        if folder_uid and folder_uid not in self.folders:
            raise ApiError(400, "folder not found", status="not-found")
        existing = self.dashboards.get(uid)
        overwrite = bool(body.get("overwrite"))
        if (existing is not None and not overwrite
                and dashboard.get("version") != existing.model["version"]):
            raise ApiError(412, "The dashboard has been changed by someone else",
                           status="version-mismatch")
        if not overwrite and any(d.folder_uid == folder_uid and d.model["title"] == title
                                 and u != uid for u, d in self.dashboards.items()):
            raise ApiError(412, "A dashboard with the same name in the folder already exists",
                           status="name-exists")
        now = _now()
        if existing is None:
            model = {**dashboard, "id": next(self._ids), "uid": uid, "version": 1}
            existing = self.dashboards[uid] = StoredDashboard(model, folder_uid, now, now)
        else:
            model = {**dashboard, "id": existing.model["id"], "uid": uid,
                     "version": existing.model["version"] + 1}
            existing.model, existing.folder_uid, existing.updated = model, folder_uid, now
        existing.versions.append(model)
        slug = _slug(title)
        return {"id": model["id"], "uid": uid, "url": f"/d/{uid}/{slug}", "status": "success",
                "version": model["version"], "slug": slug}

    async def _get_dashboard(self, request: web.Request) -> JSON:
        stored = self.dashboards.get(request.match_info["uid"])
        if stored is None:
            raise ApiError(404, "Dashboard not found")
        model = stored.model
        folder = self.folders.get(stored.folder_uid)
        slug = _slug(model["title"])
        meta = {"type": "db", "canSave": True, "canEdit": True, "canAdmin": True,
                "canStar": True, "canDelete": True, "slug": slug,
                "url": f"/d/{model['uid']}/{slug}", "expires": "0001-01-01T00:00:00Z",
                "created": stored.created, "updated": stored.updated,
                "updatedBy": "sa-crypitor", "createdBy": "sa-crypitor",
                "version": model["version"], "hasAcl": False, "isFolder": False,
                "folderId": folder["id"] if folder else 0,
                "folderUid": stored.folder_uid,
                "folderTitle": folder["title"] if folder else "General",
                "folderUrl": folder["url"] if folder else "", "provisioned": False,
                "provisionedExternalId": ""}
        return {"dashboard": model, "meta": meta}

    async def _search(self, request: web.Request) -> list[JSON]:
        q = request.query
        query = q.get("query", "").lower()
        kind = q.get("type")
        tags = set(q.getall("tag", []))
        dash_uids = set(q.getall("dashboardUIDs", []))
        folder_uids = set(q.getall("folderUIDs", []))
        hits: list[JSON] = []
        if kind in (None, "dash-folder") and not tags and not dash_uids:
            for f in self.folders.values():
                if query in f["title"].lower() and (not folder_uids or "" in folder_uids):
                    hits.append({"id": f["id"], "uid": f["uid"], "title": f["title"],
                                 "uri": f"db/{_slug(f['title'])}", "url": f["url"],
                                 "slug": "", "type": "dash-folder", "tags": [],
                                 "isStarred": False})
        if kind in (None, "dash-db"):
            for uid, d in self.dashboards.items():
                m = d.model
                if (query in m["title"].lower() and tags <= set(m.get("tags") or [])
                        and (not dash_uids or uid in dash_uids)
                        and (not folder_uids or d.folder_uid in folder_uids)):
                    folder = self.folders.get(d.folder_uid)
                    hits.append({"id": m["id"], "uid": uid, "title": m["title"],
                                 "uri": f"db/{_slug(m['title'])}",
                                 "url": f"/d/{uid}/{_slug(m['title'])}", "slug": "",
                                 "type": "dash-db", "tags": list(m.get("tags") or []),
                                 "isStarred": False, "folderId": folder["id"] if folder else 0,
                                 "folderUid": d.folder_uid,
                                 "folderTitle": folder["title"] if folder else "General",
                                 "folderUrl": folder["url"] if folder else ""})
        hits.sort(key=lambda h: str(h["title"]).lower())
        return hits[: int(q.get("limit", "1000"))]


async def _body(request: web.Request) -> JSON:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "bad request data") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad request data")
    return body


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the server and its fixture ----

@contextlib.asynccontextmanager
async def serve_fake_grafana(port: int = 0, token: str | None = None
                             ) -> AsyncIterator[FakeGrafana]:
    """Serves a new fake on 127.0.0.1 (on `port` when given, e.g. one a client already
    retries against; with `token` as its Admin token when given)."""
    fake = FakeGrafana(token)
    app = web.Application()
    app.add_routes(fake.routes())
    async with serve(app, port=port) as fake.url:
        yield fake


@pytest_asyncio.fixture
async def fake_grafana() -> AsyncIterator[FakeGrafana]:
    async with serve_fake_grafana() as fake:
        yield fake
