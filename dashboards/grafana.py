"""Pushes dashboards to Grafana through its HTTP API (grafana-client, run in a worker thread).

A push checks `/api/health`, makes sure our folder (uid `crypitor`) and Prometheus data source
(uid `crypitor-prometheus`) exist, then saves each dashboard that differs from what Grafana
holds, so pushing the same dashboards twice creates no new version. `dashboards.pusher` runs
it in the background for `crypitor run`.

Errors are `GrafanaError` (`dashboards.grafana_api`, where grafana-client's are translated).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dashboards.common import PROVISIONED_DATASOURCE_NAME, PROVISIONED_DATASOURCE_UID, TAG
from dashboards.grafana_api import GrafanaError, GrafanaSession

log = logging.getLogger(__name__)

# the same folder and datasource the file provisioning (dashboards.export) creates
FOLDER_UID = TAG
DATASOURCE_UID = PROVISIONED_DATASOURCE_UID
DATASOURCE_NAME = PROVISIONED_DATASOURCE_NAME
SAVE_MESSAGE = "crypitor dashboards push"
# Fields Grafana sets on every save; they differ between installs and versions of one
# dashboard, so they are left out when deciding whether a dashboard changed. Null values
# count as absent too: storage backends differ in whether they keep them.
GRAFANA_MANAGED = frozenset({"id", "version"})


@dataclass(frozen=True)
class PushReport:
    """What one push did; dashboards are named by uid, in the order they were given."""

    created: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    folder_created: bool = False
    datasource_created: bool = False
    datasource_updated: bool = False  # its URL differed from prometheus_url

    def summary(self) -> str:
        parts = [f"{len(self.created)} created", f"{len(self.updated)} updated",
                 f"{len(self.unchanged)} unchanged"]
        if self.folder_created:
            parts.append("folder created")
        if self.datasource_created:
            parts.append("data source created")
        if self.datasource_updated:
            parts.append("data source URL updated")
        return "dashboards: " + ", ".join(parts)


async def push(url: str, token: str, folder: str, prometheus_url: str,
               dashboards: Sequence[Mapping[str, Any]], timeout: float = 10.0) -> PushReport:
    """Provisions `dashboards` into the Grafana at `url`; raises GrafanaError.

    `timeout` bounds each HTTP request. Cancelling stops the worker thread before its next
    request (the one in flight ends within `timeout`)."""
    if timeout <= 0:
        raise ValueError(f"timeout must be positive (got {timeout!r})")
    models = _checked(dashboards)
    stop = threading.Event()
    try:
        return await asyncio.to_thread(_push, url, token, folder, prometheus_url, models,
                                       timeout, stop)
    except asyncio.CancelledError:
        stop.set()
        raise


def same_content(stored: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether a dashboard Grafana holds equals ours, ignoring what Grafana manages."""
    return bool(_content(stored) == _content(desired))


# ---- one push, in the worker thread ----

def _push(url: str, token: str, folder: str, prometheus_url: str,
          models: list[dict[str, Any]], timeout: float, stop: threading.Event) -> PushReport:
    session = _Session(url, token, timeout, stop)
    try:
        session.call("the health check", session.api.client.GET, "/health")
        folder_uid, folder_created = session.ensure_folder(folder)
        ds_created, ds_updated = session.ensure_datasource(prometheus_url)
        outcome: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": []}
        for model in models:
            outcome[session.upsert(model, folder_uid)].append(model["uid"])
    finally:
        session.close()
    return PushReport(tuple(outcome["created"]), tuple(outcome["updated"]),
                      tuple(outcome["unchanged"]), folder_created, ds_created, ds_updated)


class _Session(GrafanaSession):
    """A GrafanaSession that provisions our folder, data source and dashboards."""

    def ensure_folder(self, title: str) -> tuple[str, bool]:
        """Our folder's uid, and whether it was created now."""
        try:
            self.call(f"reading folder {FOLDER_UID}", self.api.folder.get_folder, FOLDER_UID)
            return FOLDER_UID, False
        except GrafanaError as exc:
            if exc.status != 404:
                raise
        try:
            self.call(f"creating folder {title!r}", self.api.folder.create_folder, title,
                      uid=FOLDER_UID)
            return FOLDER_UID, True
        except GrafanaError as exc:
            if exc.status != 409:
                raise
        # a folder with this title but another uid (made by hand): use it
        hits = self.call(f"searching folder {title!r}", self.api.search.search_dashboards,
                         query=title, type_="dash-folder")
        for hit in hits if isinstance(hits, list) else []:
            if isinstance(hit, dict) and hit.get("title") == title and hit.get("uid"):
                return str(hit["uid"]), False
        raise GrafanaError(f"Grafana refused creating folder {title!r} (409) and no folder "
                           "of that title was found", status=409)

    def ensure_datasource(self, prometheus_url: str) -> tuple[bool, bool]:
        """(created, updated) for our Prometheus data source."""
        what = f"data source {DATASOURCE_UID}"
        try:
            current = self.call(f"reading {what}", self.api.datasource.get_datasource_by_uid,
                                DATASOURCE_UID)
        except GrafanaError as exc:
            if exc.status != 404:
                raise
            current = None
        if current is None:
            body = {"uid": DATASOURCE_UID, "name": DATASOURCE_NAME, "type": "prometheus",
                    "url": prometheus_url, "access": "proxy", "basicAuth": False,
                    "jsonData": {"httpMethod": "POST"}}
            try:
                self.call(f"creating {what}", self.api.datasource.create_datasource, body)
            except GrafanaError as exc:
                if exc.status != 409:
                    raise
                # the name is taken by a data source of another uid; the dashboards' data
                # source variable still lets a viewer pick it
                log.warning("Grafana already has a data source named %r with another uid; "
                            "%s not created", DATASOURCE_NAME, DATASOURCE_UID)
                return False, False
            return True, False
        if isinstance(current, dict) and current.get("url") != prometheus_url:
            self.call(f"updating {what}", self.api.datasource.update_datasource_by_uid,
                      DATASOURCE_UID, {**current, "url": prometheus_url})
            return False, True
        return False, False

    def upsert(self, model: dict[str, Any], folder_uid: str) -> str:
        """Saves one dashboard unless Grafana already holds it: created/updated/unchanged."""
        uid = model["uid"]
        existing = self._fetch(uid)
        if existing is not None:
            stored, meta = existing.get("dashboard"), existing.get("meta")
            if (isinstance(stored, dict) and isinstance(meta, dict)
                    and meta.get("folderUid") == folder_uid and same_content(stored, model)):
                return "unchanged"
        try:
            self._save(model, folder_uid, existing)
        except GrafanaError as exc:
            if exc.status != 412:
                raise
            # changed by someone between our read and our save: read again, overwrite once
            log.debug("dashboard %s changed while pushing; retrying once", uid)
            existing = self._fetch(uid)
            self._save(model, folder_uid, existing)
        return "created" if existing is None else "updated"

    def _fetch(self, uid: str) -> dict[str, Any] | None:
        try:
            found = self.call(f"reading dashboard {uid}", self.api.dashboard.get_dashboard, uid)
        except GrafanaError as exc:
            if exc.status == 404:
                return None
            raise
        return found if isinstance(found, dict) else None

    def _save(self, model: dict[str, Any], folder_uid: str,
              existing: dict[str, Any] | None) -> None:
        dashboard: dict[str, Any] = {**model, "id": None}
        stored = existing.get("dashboard") if existing else None
        if isinstance(stored, dict) and isinstance(stored.get("version"), int):
            dashboard["version"] = stored["version"]
        else:
            dashboard.pop("version", None)
        body = {"dashboard": dashboard, "folderUid": folder_uid, "overwrite": True,
                "message": SAVE_MESSAGE}
        self.call(f"saving dashboard {model['uid']}", self.api.dashboard.update_dashboard, body)


def _checked(dashboards: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Plain JSON copies of the dashboards; a malformed one is our bug, hence ValueError."""
    models: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, dashboard in enumerate(dashboards):
        model = json.loads(json.dumps(dashboard))
        uid, title = model.get("uid"), model.get("title")
        if not isinstance(uid, str) or not 0 < len(uid) <= 40:
            raise ValueError(f"dashboards[{i}]: uid must be a string of 1 to 40 characters")
        if not isinstance(title, str) or not title:
            raise ValueError(f"dashboards[{i}] ({uid}): title must be a non-empty string")
        if uid in seen:
            raise ValueError(f"dashboards[{i}]: uid {uid!r} appears twice")
        seen.add(uid)
        models.append(model)
    return models


def _content(model: Mapping[str, Any]) -> Any:
    plain = json.loads(json.dumps(model))
    return _without_nulls({k: v for k, v in plain.items() if k not in GRAFANA_MANAGED})


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value
