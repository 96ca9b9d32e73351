"""Request bodies of the monitor API, read once at the edge with the limits decided here (and
documented in `/openapi.json`): at most `MAX_BODY` bytes (the server's own limit), JSON nested
at most `MAX_DEPTH` deep, numbers finite, every string and key valid Unicode.

`read_json` raises `BodyError(status, message, field)`; the route answers it as JSON.
"""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web

MAX_BODY = 256 * 1024  # bytes; what `MonitorApi.app()` gives aiohttp as client_max_size
MAX_DEPTH = 32  # nesting of arrays and objects; no route needs more than 4


class BodyError(Exception):
    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise ValueError(f"{text[:20]} is past a float's range")
    return value


def _valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, JSON "\udc80"
        return False
    return True


def _check(value: Any, path: str, depth: int) -> None:
    """Walks without recursion past `MAX_DEPTH`; the first offence raises BodyError."""
    if isinstance(value, str):
        if not _valid_text(value):
            raise BodyError(422, "must be valid Unicode (no lone surrogates)", path or None)
        return
    if not isinstance(value, (dict, list)):
        return
    if depth >= MAX_DEPTH:
        raise BodyError(422, f"nested deeper than {MAX_DEPTH} levels", path or None)
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]", depth + 1)
        return
    for key, item in value.items():
        if not _valid_text(key):
            raise BodyError(422, "names must be valid Unicode (no lone surrogates)",
                            path or None)
        _check(item, f"{path}.{key}" if path else key, depth + 1)


def parse_json(raw: bytes) -> Any:
    """`raw` as JSON within the limits above; BodyError (400 or 422) when not."""
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError):  # also integers past Python's 4,300 digits
        raise BodyError(400, "body is not valid JSON") from None
    _check(value, "", 0)
    return value


async def read_json(request: web.Request) -> Any:
    """The request's body as JSON within the limits above; BodyError when not."""
    return parse_json(await request.read())
