"""The OpenAPI 3.1 description of every route of the service, served at /openapi.json."""

from __future__ import annotations

from typing import Any

_ERROR = {"$ref": "#/components/responses/Error"}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_SECURED: list[dict[str, list[str]]] = [{"bearer": []}]


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _op(summary: str, responses: dict[str, Any], body: dict[str, Any] | None = None,
        params: list[dict[str, Any]] | None = None, secured: bool = True) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, **_json(body)}
    if params:
        op["parameters"] = params
    if secured:
        op["security"] = _SECURED
        op["responses"] = {**responses, "401": _ERROR}
    return op


_EVENT_IN = {
    "type": "object", "required": ["type", "data"], "additionalProperties": False,
    "properties": {
        "type": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,200}$"},
        "data": {"description": "any JSON value, at most 256 KB serialised"},
        "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 256},
    },
}
_ENDPOINT_FIELDS = {
    "url": {"type": "string", "format": "uri"},
    "event_types": {"type": "array", "items": {"type": "string"}},
    "rate_limit": {"type": ["number", "null"], "exclusiveMinimum": 0},
    "description": {"type": "string", "maxLength": 1000},
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Crypitor webhook delivery service", "version": "1"},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "responses": {"Error": {"description": "error", **_json(_ref("Error"))}},
        "schemas": {
            "Error": {"type": "object", "required": ["error"],
                      "properties": {"error": {"type": "string"},
                                     "field": {"type": ["string", "null"]}}},
            "EventIn": _EVENT_IN,
            "EndpointIn": {"type": "object", "required": ["url"],
                           "additionalProperties": False,
                           "properties": {**_ENDPOINT_FIELDS,
                                          "secret": {"type": "string", "pattern": "^whsec_"}}},
            "EndpointPatch": {"type": "object", "additionalProperties": False,
                              "properties": {**_ENDPOINT_FIELDS,
                                             "disabled": {"type": "boolean"}}},
            "Endpoint": {"type": "object", "properties": {
                **_ENDPOINT_FIELDS, "id": {"type": "string"},
                "secret": {"type": "string", "description": "only when created"},
                "disabled": {"type": "boolean"},
                "disabled_reason": {"type": ["string", "null"]},
                "created_at": {"type": ["string", "null"], "format": "date-time"},
                "failing_since": {"type": ["string", "null"], "format": "date-time"}}},
            "Attempt": {"type": "object", "properties": {
                "number": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                "duration_seconds": {"type": "number"},
                "status_code": {"type": ["integer", "null"]},
                "error": {"type": ["string", "null"]},
                "response_headers": {"type": "object"},
                "response_body": {"type": "string"}}},
            "Delivery": {"type": "object", "properties": {
                "id": {"type": "string"}, "endpoint_id": {"type": "string"},
                "state": {"enum": ["pending", "retrying", "delivered", "dead"]},
                "attempts": {"type": "array", "items": _ref("Attempt")},
                "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                "created_at": {"type": "string", "format": "date-time"}}},
            "Event": {"type": "object", "properties": {
                "id": {"type": "string"}, "type": {"type": "string"}, "data": {},
                "idempotency_key": {"type": ["string", "null"]},
                "accepted_at": {"type": "string", "format": "date-time"},
                "deliveries": {"type": "array", "items": _ref("Delivery")}}},
        },
    },
    "paths": {
        "/healthz": {"get": _op("liveness", {"200": {"description": "alive"}}, secured=False)},
        "/readyz": {"get": _op("readiness: the store answers",
                               {"200": {"description": "ready"}, "503": _ERROR},
                               secured=False)},
        "/metrics": {"get": _op("Prometheus metrics", {"200": {"description": "text"}},
                                secured=False)},
        "/openapi.json": {"get": _op("this document", {"200": {"description": "OpenAPI"}},
                                     secured=False)},
        "/v1/endpoints": {
            "post": _op("register an endpoint", {
                "201": {"description": "created, with its secret", **_json(_ref("Endpoint"))},
                "400": _ERROR, "422": _ERROR}, body=_ref("EndpointIn")),
            "get": _op("list endpoints", {"200": {"description": "endpoints", **_json(
                {"type": "array", "items": _ref("Endpoint")})}}),
        },
        "/v1/endpoints/{id}": {
            "get": _op("one endpoint", {"200": {"description": "the endpoint", **_json(
                _ref("Endpoint"))}, "404": _ERROR}, params=[_ID]),
            "patch": _op("change, disable or enable an endpoint", {
                "200": {"description": "changed", **_json(_ref("Endpoint"))},
                "400": _ERROR, "404": _ERROR, "422": _ERROR},
                body=_ref("EndpointPatch"), params=[_ID]),
            "delete": _op("remove an endpoint", {"204": {"description": "removed"},
                                                 "404": _ERROR}, params=[_ID]),
        },
        "/v1/endpoints/{id}/replay": {
            "post": _op("re-enqueue dead deliveries, optionally within a time window", {
                "202": {"description": "how many", **_json(
                    {"type": "object", "properties": {"replayed": {"type": "integer"}}})},
                "404": _ERROR, "422": _ERROR},
                body={"type": "object", "properties": {
                    "since": {"type": "string", "format": "date-time"},
                    "until": {"type": "string", "format": "date-time"}}},
                params=[_ID]),
        },
        "/v1/events": {
            "post": _op("accept one event; 202 once it is durable", {
                "202": {"description": "accepted", **_json(
                    {"type": "object", "properties": {"id": {"type": "string"}}})},
                "400": _ERROR, "413": _ERROR, "422": _ERROR}, body=_ref("EventIn")),
        },
        "/v1/events/batch": {
            "post": _op("accept up to 1000 events in one request", {
                "202": {"description": "accepted", **_json({"type": "object", "properties": {
                    "ids": {"type": "array", "items": {"type": "string"}}}})},
                "400": _ERROR, "413": _ERROR, "422": _ERROR},
                body={"type": "array", "items": _ref("EventIn"), "maxItems": 1000}),
        },
        "/v1/events/{id}": {
            "get": _op("an event with its deliveries and every attempt", {
                "200": {"description": "the event", **_json(_ref("Event"))}, "404": _ERROR},
                params=[_ID]),
        },
    },
}
