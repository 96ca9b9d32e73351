"""The OpenAPI 3.1 description of the monitor's HTTP API, served at /openapi.json.

`OPERATIONS` describes every route the monitor may register; `document()` keeps those the
running app did register (the alerting routes and the canary sink are optional), so the
description never names a route that answers 404. The input limits stated here are the ones
`monitor.web.bodies` enforces.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from alerts.alertmanager import MAX_ALERTS, MAX_TEXT
from alerts.silences import MAX_DURATION
from core.openapi import components
from monitor.web.bodies import MAX_BODY, MAX_DEPTH

Route = tuple[str, str]  # (path as aiohttp canonicalises it, lower-case method)

_ERROR = {"$ref": "#/components/responses/Error"}
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]
_LIMITS = (f"Bodies: JSON, at most {MAX_BODY // 1024} KiB (413 beyond), nested at most "
           f"{MAX_DEPTH} deep, numbers finite, every string and name valid Unicode (no lone "
           "surrogates); a body that is not JSON is a 400, one breaking a limit or a field's "
           "rule a 422 naming the field (its JSON path).")


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, **_json(schema)}


def _op(summary: str, responses: dict[str, Any], body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, secured: bool = False,
        description: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": dict(responses)}
    if description:
        op["description"] = description
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
        op["responses"].update({"400": _ERROR, "413": _ERROR, "422": _ERROR})
    if params:
        op["parameters"] = params
    if secured:
        op["security"] = _SECURED
        op["responses"].update({
            "401": _ERROR,
            "429": {"description": "too many failed authentications from this address",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    **_json(_ref("Error"))}})
    return op


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string"}}


_TIME = {"type": "string", "format": "date-time"}
_TIME_OR_NULL = {"type": ["string", "null"], "format": "date-time"}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_TARGET = {
    "type": "object",
    "required": ["name", "type", "labels", "up", "last_result", "uptime"],
    "properties": {
        "name": {"type": "string"}, "type": {"type": "string"}, "url": {"type": "string"},
        "labels": _STRINGS, "interval_seconds": {"type": "number"},
        "timeout_seconds": {"type": "number"}, "up": {"type": ["boolean", "null"]},
        "since": _TIME_OR_NULL, "consecutive_failures": {"type": "integer"},
        "probes": {"type": "object",
                   "additionalProperties": {"type": "integer"}},
        "last_result": {"type": ["object", "null"],
                        "description": "success, duration_seconds, started_at, "
                                       "failure_reason, detail, values, phases, warnings"},
        "uptime": {"type": "object", "description": "ratio per window, null when no data; "
                                                   "with [cluster], the whole cluster's",
                   "additionalProperties": {"type": ["number", "null"]}},
        "locations": {
            "type": "object",
            "description": "[cluster] only: the last result from each location that probed "
                           "the target. With it, `up` is the cluster's (null: no fresh result "
                           "anywhere; false: a fresh location sees it down) and `last_result` "
                           "the newest of any location; `since`, `consecutive_failures` and "
                           "`probes` stay this instance's own",
            "additionalProperties": {
                "type": "object", "required": ["up", "instance", "stale", "last_result"],
                "properties": {
                    "up": {"type": "boolean"},
                    "instance": {"type": "string", "description": "the instance that probed"},
                    "stale": {"type": "boolean",
                              "description": "older than 2 intervals + the lease"},
                    "last_result": {"type": "object"}}}},
    },
}
_ALERT = {
    "type": "object", "required": ["alertname", "state", "labels"],
    "properties": {
        "alertname": {"type": "string"}, "target": {"type": ["string", "null"]},
        "state": {"enum": ["pending", "firing"]}, "severity": {"type": ["string", "null"]},
        "fingerprint": {"type": "string"}, "since": _TIME_OR_NULL,
        "muted": {"type": ["string", "null"], "description": "why it is muted, if it is"},
        "source": {"type": "string"}, "labels": _STRINGS, "annotations": _STRINGS,
    },
}
_SILENCE = {
    "type": "object", "required": ["id", "matchers", "starts_at", "ends_at"],
    "properties": {
        "id": {"type": "string"}, "matchers": _STRINGS, "starts_at": _TIME, "ends_at": _TIME,
        "comment": {"type": "string"}, "created_by": {"type": "string"},
        "active": {"type": "boolean"},
    },
}
_SILENCE_IN = {
    "type": "object", "required": ["matchers"],
    "description": "`ends_at` wins over `duration`; times need a zone and must lie before the "
                   "year 9999 in UTC; a start more than 10 years past is read as now",
    "properties": {
        "matchers": {"type": "object", "minProperties": 1,
                     "additionalProperties": {"type": "string"},
                     "description": "label values an alert must all have to be muted"},
        "starts_at": {**_TIME_OR_NULL, "description": "default (or null): now"},
        "ends_at": {**_TIME_OR_NULL, "description": "null: now"},
        "duration": {"type": "string", "maxLength": 64, "default": "1h",
                     "description": f'like "30m", "2h", "1d", "1h30m"; more than 0s, at most '
                                    f"{MAX_DURATION.days}d; checked even when ends_at is "
                                    "given"},
        "comment": {"type": "string", "description": "kept to its first 500 characters"},
        "created_by": {"type": "string", "default": "api",
                       "description": "kept to its first 100 characters"},
    },
}
_ALERTMANAGER_IN = {
    "type": "object", "required": ["version", "alerts"],
    "description": "Alertmanager's webhook payload, version 4; fields not listed are ignored",
    "properties": {
        "version": {"const": "4"},
        "alerts": {"type": "array", "maxItems": MAX_ALERTS, "items": {
            "type": "object", "required": ["status", "labels"],
            "properties": {
                "status": {"enum": ["firing", "resolved"]},
                "labels": {**_STRINGS, "required": ["alertname"],
                           "description": f"values kept to {MAX_TEXT} characters, names "
                                          "to 200; severity defaults to warning"},
                "annotations": {**_STRINGS, "type": ["object", "null"],
                                "description": f"values kept to {MAX_TEXT} characters"},
                "startsAt": {"type": ["string", "null"],
                             "description": "RFC 3339 with a zone, years 1000-9999 in UTC"},
                "endsAt": {"type": ["string", "null"],
                           "description": "RFC 3339; Alertmanager's zero time for none"},
            }}},
    },
}

_NUMBER_OR_NULL = {"type": ["number", "null"]}
_BUCKET = {
    "type": "object", "required": ["start", "uptime", "latency_ms"],
    "properties": {"start": _TIME, "uptime": {**_NUMBER_OR_NULL, "description": "0-1"},
                   "latency_ms": {**_NUMBER_OR_NULL,
                                  "description": "mean probe duration in the bucket"}},
}
_STATUS = {
    "type": "object", "required": ["title", "updated", "groups", "incidents", "slos"],
    "description": "With [status_page].public = true, no `url`, `labels`, `failure`, location "
                   "`instance` or incident `summary`: names, states, uptime and latency only",
    "properties": {
        "title": {"type": "string"}, "updated": _TIME, "public": {"type": "boolean"},
        "groups": {"type": "array", "items": {
            "type": "object", "required": ["name", "targets"],
            "properties": {
                "name": {"type": "string",
                         "description": "the group_by label's value; \"\" for the rest"},
                "targets": {"type": "array", "items": {
                    "type": "object",
                    "required": ["name", "state", "since", "uptime", "latency_ms", "history"],
                    "properties": {
                        "name": {"type": "string"}, "type": {"type": "string"},
                        "state": {"enum": ["up", "down", "pending"]},
                        "since": _TIME_OR_NULL, "maintenance": {"type": "boolean"},
                        "uptime": {"type": "object",
                                   "additionalProperties": _NUMBER_OR_NULL},
                        "latency_ms": {**_NUMBER_OR_NULL,
                                       "description": "mean over the last 24 hours"},
                        "history": {"type": "array", "items": _BUCKET,
                                    "description": "the last 24 hours, oldest first"},
                        "daily": {"type": "array", "items": _BUCKET,
                                  "description": "the last 90 days, oldest first"},
                        "locations": {"type": "array", "items": {"type": "object"}},
                        "url": {"type": "string"}, "labels": _STRINGS,
                        "failure": {"type": ["object", "null"]}}}}}}},
        "incidents": {"type": "array", "items": {
            "type": "object",
            "required": ["id", "kind", "status", "title", "started_at", "resolved_at"],
            "properties": {
                "id": {"type": "string"}, "kind": {"enum": ["alert", "maintenance"]},
                "status": {"enum": ["firing", "maintenance", "resolved"]},
                "title": {"type": "string"}, "alertname": {"type": "string"},
                "target": {"type": "string"}, "severity": {"type": "string"},
                "summary": {"type": "string"}, "started_at": _TIME_OR_NULL,
                "resolved_at": {**_TIME_OR_NULL,
                                "description": "a maintenance window's end"}}}},
        "slos": {"type": "array", "items": {
            "type": "object",
            "required": ["name", "objective", "window", "attained", "error_budget_remaining"],
            "properties": {"name": {"type": ["string", "null"]}}}},
    },
}
_SVG = {"content": {"image/svg+xml": {"schema": {"type": "string"}}},
        "headers": {"Cache-Control": {"schema": {"type": "string"},
                                      "description": "max-age=60"}}}

OPERATIONS: dict[Route, dict[str, Any]] = {
    ("/api/v1/status", "get"): _op("the status page's data", {
        "200": _ok("targets by group with their history, the incidents, the SLOs",
                   _ref("Status"))}),
    ("/api/v1/targets/{name}/badge.svg", "get"): _op("a badge of the target's state", {
        "200": {"description": "SVG: up, down or pending", **_SVG}, "404": _ERROR},
        params=[_path_param("name", "the target's name")]),
    ("/api/v1/targets/{name}/uptime/{window}/badge.svg", "get"): _op(
        "a badge of the target's uptime over a window", {
            "200": {"description": "SVG: the percentage", **_SVG}, "404": _ERROR},
        params=[_path_param("name", "the target's name"),
                _path_param("window", "24h, 7d or 30d (anything else: 404)")]),
    ("/feed.atom", "get"): _op("the incidents as an Atom feed", {"200": {
        "description": "Atom 1.0: an entry when an incident opens and when it is resolved",
        "content": {"application/atom+xml": {"schema": {"type": "string"}}}}}),
    ("/", "get"): _op("the status page", {"200": {
        "description": "HTML, readable without JavaScript",
        "content": {"text/html": {"schema": {"type": "string"}}}}}),
    ("/metrics", "get"): _op("the monitor's own metrics", {"200": {
        "description": "Prometheus text exposition; OpenMetrics when the Accept header asks",
        "content": {"text/plain": {"schema": {"type": "string"}},
                    "application/openmetrics-text": {"schema": {"type": "string"}}}}}),
    ("/healthz", "get"): _op("liveness: 200 while the process works", {"200": _ok(
        "working", {"type": "object", "required": ["status"],
                    "properties": {"status": {"const": "ok"},
                                   "targets": {"type": "integer"},
                                   "uptime_seconds": {"type": "number"}}})}),
    ("/readyz", "get"): _op("readiness: 200 once probing runs", {
        "200": _ok("ready", {"type": "object"}),
        "503": _ok("stopping, or an essential task is down", {"type": "object"})}),
    ("/openapi.json", "get"): _op("this description", {"200": _ok(
        "OpenAPI 3.1", {"type": "object"})}),
    ("/-/reload", "post"): _op("re-read the config file, as SIGHUP does", {
        "200": _ok("applied", {
            "type": "object", "required": ["status", "targets"],
            "properties": {"status": {"const": "applied"}, "targets": {"type": "integer"}}}),
        "422": _ok("not applied: the previous config keeps running", {
            "type": "object", "required": ["error", "field", "errors"],
            "properties": {"error": {"type": "string"}, "field": {"const": "config"},
                           "errors": {"type": "array", "items": {"type": "string"},
                                      "description": "every error, with its key and "
                                                     "value"}}})},
        secured=True),
    ("/api/v1/targets", "get"): _op("every target with its state and uptime", {
        "200": _ok("the targets", {"type": "array", "items": _ref("Target")})}),
    ("/api/v1/targets/{name}", "get"): _op("one target", {
        "200": _ok("the target", _ref("Target")), "404": _ERROR},
        params=[_path_param("name", "the target's name")]),
    ("/api/v1/alerts", "get"): _op("alerts pending or firing", {
        "200": _ok("the alerts", {"type": "array", "items": _ref("Alert")})}),
    ("/api/v1/notifications", "get"): _op("the notification history, newest first", {
        "200": _ok("what was sent where, when, with what outcome",
                   {"type": "array", "items": {"type": "object"}}),
        "400": _ERROR},
        params=[{"name": "limit", "in": "query", "required": False,
                 "description": "how many (clamped to 1-1000)",
                 "schema": {"type": "integer", "default": 100}}]),
    ("/api/v1/silences", "get"): _op("silences in force", {
        "200": _ok("the silences", {"type": "array", "items": _ref("Silence")})}),
    ("/api/v1/silences", "post"): _op("add a silence", {
        "201": _ok("the silence", _ref("Silence"))}, body=_SILENCE_IN, secured=True,
        description=_LIMITS),
    ("/api/v1/silences/{id}", "delete"): _op("end a silence now", {
        "200": _ok("the ended silence", _ref("Silence")), "404": _ERROR},
        params=[_path_param("id", "the silence's id")], secured=True),
    ("/api/v1/alertmanager", "post"): _op("alerts from Alertmanager's webhook receiver", {
        "200": _ok("routed like native alerts", {
            "type": "object", "required": ["received"],
            "properties": {"received": {"type": "integer"}}})},
        body=_ALERTMANAGER_IN, secured=True, description=_LIMITS),
    ("/canary/{key}", "post"): _op("the webhook canary's sink", {
        "204": {"description": "a signed canary delivery, counted"},
        "401": _ERROR, "413": _ERROR, "422": _ERROR},
        params=[_path_param("key", "which service's canary (from its URL)")],
        description="Deliveries of the webhook service, checked by their Standard Webhooks "
                    "signature instead of an API key: `webhook-id` and `webhook-signature` "
                    "ASCII, `webhook-timestamp` at most 12 decimal digits, else 401."),
}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Crypitor monitor", "version": "1",
             "description": "POST and DELETE need `Authorization: Bearer <monitor api key>` "
                            "(the canary sink excepted). Errors are JSON "
                            '`{"error", "field"}`. ' + _LIMITS},
    "components": components({"Target": _TARGET, "Alert": _ALERT, "Silence": _SILENCE,
                              "Status": _STATUS}),
}


def registered(router: web.UrlDispatcher) -> set[Route]:
    """The (path, method) pairs `router` serves; HEAD, which aiohttp adds to every GET, left
    out."""
    return {(route.resource.canonical, route.method.lower()) for route in router.routes()
            if route.resource is not None and route.method not in ("HEAD", "OPTIONS")}


def document(routes: Iterable[Route]) -> dict[str, Any]:
    """The OpenAPI document of `routes`, those `OPERATIONS` describes."""
    paths: dict[str, dict[str, Any]] = {}
    for path, method in sorted(routes):
        op = OPERATIONS.get((path, method))
        if op is not None:
            paths.setdefault(path, {})[method] = op
    return {**_DOCUMENT, "paths": paths}
