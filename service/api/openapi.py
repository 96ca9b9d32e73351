"""The OpenAPI 3.1 description of every route of the service, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from core.openapi import components
from service.api.parsing import (
    MAX_BATCH,
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    MAX_EVENT_TYPES,
    MAX_REQUEST,
    MAX_SMALL_BODY,
    MAX_STRING,
    MAX_URL,
)
from service.models import MAX_RATE_LIMIT, MIN_RATE_LIMIT

_ERROR = {"$ref": "#/components/responses/Error"}
# /readyz: {"status": "ready"}, or why not ("store unavailable", "task down: dispatcher",
# "draining" from SIGTERM until the listener closes)
_STATUS = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
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
        op["responses"] = {**responses, "401": _ERROR, "429": _ERROR}  # 429: wrong keys
    return op


_LIMITS = f"""Input limits, the same on every route (decided in `service.api.parsing`):

- a request body is at most {MAX_REQUEST // 2**20} MB ({MAX_SMALL_BODY // 2**20} MB for an \
endpoint or a replay), and JSON nests at most {MAX_DEPTH} levels of arrays and objects (an \
event's `data` counts from its own top);
- every string and object key of a body outside event `data` holds at most \
{MAX_STRING:,} characters and valid Unicode: a lone surrogate such as `"\\udc80"` is \
refused (400);
- a number must lie in its field's range: NaN, Infinity, `1e400` and integers hundreds of \
digits long are refused (422) naming the field;
- an event's `data` is at most {MAX_EVENT_BYTES // 1024} KB and kept byte for byte (numbers \
of any size stay exact); a batch holds 1 to {MAX_BATCH:,} events;
- an endpoint's `url` is at most {MAX_URL:,} characters, without spaces or control \
characters (CR, LF, tab: percent-encode them); it has at most {MAX_EVENT_TYPES:,} \
`event_types`, each 1-200 characters; `rate_limit` is {MIN_RATE_LIMIT:g} to \
{MAX_RATE_LIMIT:,g} deliveries per second, or null for unlimited.

Every refusal is JSON `{{"error", "field"}}` naming the field (`url`, `[3].data`, \
`tags[0]`): 400 for a body that is not JSON or not valid Unicode, 413 for one too large, \
422 for a value its field does not take. Never a 5xx for what a client sends."""

_EVENT_TYPE = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,200}$"}
_EVENT_IN = {
    "type": "object", "required": ["type", "data"], "additionalProperties": False,
    "properties": {
        "type": _EVENT_TYPE,
        "data": {"description": f"any JSON value, at most {MAX_EVENT_BYTES // 1024} KB "
                                f"serialised and {MAX_DEPTH} levels deep"},
        "idempotency_key": {"type": ["string", "null"], "minLength": 1, "maxLength": 256,
                            "description": "the same key within 24 h returns the first id; "
                                           "null: none"},
    },
}
_ENDPOINT_FIELDS = {
    "url": {"type": "string", "format": "uri", "maxLength": MAX_URL,
            "pattern": "^[^\\x00-\\x20\\x7f]*$",
            "description": "http(s); no spaces or control characters"},
    "event_types": {"type": "array", "items": _EVENT_TYPE, "maxItems": MAX_EVENT_TYPES,
                    "description": "empty or absent: every type"},
    "rate_limit": {"type": ["number", "null"], "minimum": MIN_RATE_LIMIT,
                   "maximum": MAX_RATE_LIMIT,
                   "description": "deliveries per second; null: unlimited"},
    "description": {"type": "string", "maxLength": 1000},
}
_ADDRESS = {"type": "string", "pattern": "^0x[0-9a-fA-F]{40}$",
            "description": "lower- or upper-case hex, or a valid EIP-55 checksum when mixed"}
_ADDRESSES = {"type": "array", "items": _ADDRESS, "maxItems": 100_000}
_MONITOR_FIELDS = {
    "conditions": {
        "type": "object", "additionalProperties": False,
        "description": "the kinds set true are watched (absent ones are not; at least one "
                       "true); absent: every kind, any contract",
        "properties": {"native": {"type": "boolean"}, "erc20": {"type": "boolean"},
                       "erc721": {"type": "boolean"},
                       "contracts": {"type": "array", "items": _ADDRESS, "maxItems": 1000,
                                     "description": "token contracts allowed; empty: any"}},
        "anyOf": [{"required": [kind], "properties": {kind: {"const": True}}}
                  for kind in ("native", "erc20", "erc721")]},
    "direction": {"enum": ["in", "out", "all"], "default": "all"},
    "confirmations": {"type": ["integer", "null"], "minimum": 0, "maximum": 10_000,
                      "description": "null or absent: the chain's default"},
    "endpoint_id": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,200}$",
                    "description": "an existing endpoint"},
    "tags": {"type": "array", "maxItems": 32,
             "items": {"type": "string", "minLength": 1, "maxLength": 64}},
    "enabled": {"type": "boolean", "default": True},
}
_LOWER_ADDRESSES = {"type": "array", "items": {"type": "string",
                                                "pattern": "^0x[0-9a-f]{40}$"}}
_Q = {"in": "query", "required": False}

OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Crypitor webhook delivery service", "version": "1",
             "description": _LIMITS},
    "components": components({
            "EventIn": _EVENT_IN,
            "EndpointIn": {"type": "object", "required": ["url"],
                           "additionalProperties": False,
                           "properties": {**_ENDPOINT_FIELDS,
                                          "secret": {"type": ["string", "null"],
                                                     "pattern": "^whsec_[A-Za-z0-9+/]+=*$",
                                                     "description": "base64 of 24 to 64 "
                                                     "bytes of key; null or absent: "
                                                     "generated"}}},
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
            "MonitorIn": {"type": "object", "additionalProperties": False,
                          "required": ["chain", "addresses", "endpoint_id"],
                          "properties": {"chain": {"type": "string",
                                                   "description": "a [service.chains.NAME]"},
                                         "addresses": _ADDRESSES, **_MONITOR_FIELDS}},
            "MonitorPatch": {"type": "object", "additionalProperties": False,
                             "properties": {"add_addresses": _ADDRESSES,
                                            "remove_addresses": _ADDRESSES,
                                            **_MONITOR_FIELDS}},
            "Monitor": {"type": "object", "properties": {
                "id": {"type": "string"}, "chain": {"type": "string"},
                **_MONITOR_FIELDS,
                "conditions": {"type": "object", "properties": {
                    "native": {"type": "boolean"}, "erc20": {"type": "boolean"},
                    "erc721": {"type": "boolean"}, "contracts": _LOWER_ADDRESSES}},
                "effective_confirmations": {"type": ["integer", "null"],
                                            "description": "what applies: the monitor's or "
                                                           "its chain's default"},
                "address_count": {"type": "integer"},
                "addresses": {**_LOWER_ADDRESSES,
                              "description": "lower-case, sorted; only in GET /v1/monitors/{id}"},
                "created_at": {"type": ["string", "null"], "format": "date-time"}}},
            "MonitorEvent": {"type": "object", "properties": {
                "event_id": {"type": "string", "description": "see GET /v1/events/{id}"},
                "type": {"type": "string",
                         "description": "transfer.detected, transfer.confirmed, ..."},
                "tx_hash": {"type": "string"}, "block_number": {"type": "integer"},
                "addresses": {**_LOWER_ADDRESSES,
                              "description": "the watched addresses involved"},
                "accepted_at": {"type": "string", "format": "date-time"},
                "data": {"description": "the payload delivered: chain, monitor_id, tags, "
                                        "direction, category, tx_hash, block_number, "
                                        "block_hash, log_index, from, to, contract, amount, "
                                        "token_id, confirmations, sequence (orders the "
                                        "events of one transfer for one monitor), and on "
                                        "transfer.reverted was_confirmed"}}},
        }),
    "paths": {
        "/healthz": {"get": _op("liveness", {"200": {"description": "alive"}}, secured=False)},
        "/readyz": {"get": _op("readiness: the store answers and no essential task "
                               "(the dispatcher) is down",
                               {"200": {"description": "ready", **_json(_STATUS)},
                                "503": {"description": "not ready, and why",
                                        **_json(_STATUS)}},
                               secured=False)},
        "/metrics": {"get": _op("Prometheus metrics", {"200": {"description": "text"}},
                                secured=False)},
        "/openapi.json": {"get": _op("this document", {"200": {"description": "OpenAPI"}},
                                     secured=False)},
        "/v1/endpoints": {
            "post": _op("register an endpoint", {
                "201": {"description": "created, with its secret", **_json(_ref("Endpoint"))},
                "400": _ERROR, "413": _ERROR, "422": _ERROR}, body=_ref("EndpointIn")),
            "get": _op("list endpoints", {"200": {"description": "endpoints", **_json(
                {"type": "array", "items": _ref("Endpoint")})}}),
        },
        "/v1/endpoints/{id}": {
            "get": _op("one endpoint", {"200": {"description": "the endpoint", **_json(
                _ref("Endpoint"))}, "404": _ERROR}, params=[_ID]),
            "patch": _op("change, disable or enable an endpoint", {
                "200": {"description": "changed", **_json(_ref("Endpoint"))},
                "400": _ERROR, "404": _ERROR, "413": _ERROR, "422": _ERROR},
                body=_ref("EndpointPatch"), params=[_ID]),
            "delete": _op("remove an endpoint; refused (409) while monitors send their "
                          "events to it", {"204": {"description": "removed"},
                                           "404": _ERROR, "409": _ERROR}, params=[_ID]),
        },
        "/v1/endpoints/{id}/replay": {
            "post": _op("re-enqueue dead deliveries, optionally within a time window", {
                "202": {"description": "how many", **_json(
                    {"type": "object", "properties": {"replayed": {"type": "integer"}}})},
                "400": _ERROR, "404": _ERROR, "413": _ERROR, "422": _ERROR},
                body={"type": "object", "additionalProperties": False, "properties": {
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
            "post": _op(f"accept 1 to {MAX_BATCH} events in one request (an empty list is 422)", {
                "202": {"description": "accepted", **_json({"type": "object", "properties": {
                    "ids": {"type": "array", "items": {"type": "string"}}}})},
                "400": _ERROR, "413": _ERROR, "422": _ERROR},
                body={"type": "array", "items": _ref("EventIn"), "minItems": 1,
                      "maxItems": MAX_BATCH}),
        },
        "/v1/events/{id}": {
            "get": _op("an event with its deliveries and every attempt", {
                "200": {"description": "the event", **_json(_ref("Event"))}, "404": _ERROR},
                params=[_ID]),
        },
        "/v1/monitors": {
            "post": _op("watch addresses of one chain; answers without the address list", {
                "201": {"description": "created", **_json(_ref("Monitor"))},
                "400": _ERROR, "413": _ERROR, "422": _ERROR}, body=_ref("MonitorIn")),
            "get": _op("list monitors (address_count, no address lists), oldest first", {
                "200": {"description": "monitors", **_json(
                    {"type": "array", "items": _ref("Monitor")})}, "422": _ERROR},
                params=[{"name": "chain", **_Q, "schema": {"type": "string"}}]),
        },
        "/v1/monitors/{id}": {
            "get": _op("one monitor with every address", {
                "200": {"description": "the monitor", **_json(_ref("Monitor"))},
                "404": _ERROR}, params=[_ID]),
            "patch": _op("enable, disable, add or remove addresses, change fields; answers "
                         "without the address list", {
                "200": {"description": "changed", **_json(_ref("Monitor"))},
                "400": _ERROR, "404": _ERROR, "409": _ERROR, "413": _ERROR, "422": _ERROR},
                body=_ref("MonitorPatch"), params=[_ID]),
            "delete": _op("stop watching (the history stays with its events)", {
                "204": {"description": "removed"}, "404": _ERROR}, params=[_ID]),
        },
        "/v1/monitors/{id}/events": {
            "get": _op("the monitor's event history, newest first", {
                "200": {"description": "entries", **_json(
                    {"type": "array", "items": _ref("MonitorEvent")})},
                "404": _ERROR, "422": _ERROR},
                params=[_ID,
                        {"name": "tx_hash", **_Q, "schema": {
                            "type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"}},
                        {"name": "address", **_Q, "schema": _ADDRESS},
                        {"name": "limit", **_Q, "schema": {
                            "type": "integer", "minimum": 1, "maximum": 1000,
                            "default": 100}},
                        {"name": "before", **_Q, "description": "the last event id of the "
                         "previous page (a full page answers with a Link rel=\"next\" "
                         "header to the next one)", "schema": {
                             "type": "string", "pattern": "^evt_[0-9a-f]{16,32}$"}}]),
        },
    },
}
