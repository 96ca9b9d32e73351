"""What both HTTP APIs' OpenAPI descriptions share: the bearer scheme and the one error shape,
`{"error": "...", "field": "..."}`, that every 4xx answers with."""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "string"}, "field": {"type": ["string", "null"]}}}


def components(schemas: dict[str, Any]) -> dict[str, Any]:
    """The `components` of a description: the bearer scheme, the `Error` response and schema,
    and `schemas`."""
    return {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "responses": {"Error": {"description": "error", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}}},
        "schemas": {"Error": ERROR_SCHEMA, **schemas},
    }
