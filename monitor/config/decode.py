"""Decode TOML tables into frozen dataclasses, collecting every error with its key path.

The dataclass is the schema: field types say what a key holds, field metadata marks
durations (`probes.base.DURATION`), env-capable secrets (`probes.base.SECRET`) and a TOML key
that differs from the field name (`KEY`, for `for`). Classes check their own invariants in
`__post_init__` by raising `OptionError` (or `ValueError`), which lands on the right path.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit

from monitor.config.durations import MAX_SECONDS, format_duration, parse_duration
from probes.base import DURATION, SECRET, OptionError

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+(\[\d+\])*")  # OptionError keys may end in [i]
KEY = "key"  # metadata: the TOML key when it differs from the field name

T = TypeVar("T")


@dataclass(frozen=True)
class Issue:
    """One config error: where, what is wrong, and the offending value (already shown)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def show(value: object) -> str:
    """A value as the user wrote it in TOML, shortened."""
    try:
        text = json.dumps(value, default=str)
    except (ValueError, RecursionError):  # an int past str()'s digit limit, deep nesting
        return f"a {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not _BARE_KEY.fullmatch(key):  # "", spaces, dots, control characters: quoted as TOML does
        key = show(key)
    return f"{path}.{key}" if path else key


def check_http_url(key: str, value: str) -> None:
    """For `__post_init__`: `value` is an http(s) URL with a host, as aiohttp dials it."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (a bad port raises here)
    except ValueError:
        raise OptionError(key, "is not a valid URL", value) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OptionError(key, "must be an http:// or https:// URL with a host", value)


class Decoder:
    """Accumulates issues while decoding; one instance per config load."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def error(self, path: str, message: str, value: object = dataclasses.MISSING,
              secret: bool = False) -> None:
        if value is not dataclasses.MISSING:
            shown = f"a {type(value).__name__}" if secret else show(value)
            message = f"{message} (got {shown})"
        self.issues.append(Issue(path, message))

    def table(self, cls: type[T], raw: object, path: str,
              exclude: frozenset[str] = frozenset()) -> T | None:
        """Decode `raw` into `cls`; None when anything in it was wrong (issues recorded).
        `exclude`: keys of the same table decoded elsewhere (a target's common keys beside
        its type's options): allowed, and named with the others in an unknown key's error."""
        if not isinstance(raw, Mapping):
            self.error(path, "must be a table", raw)
            return None
        hints = typing.get_type_hints(cls)
        fields = {f.metadata.get(KEY, f.name): f for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                  if f.init}
        before = len(self.issues)
        for key in raw:
            if key not in fields and key not in exclude:
                allowed = ", ".join(sorted({*fields, *exclude}))
                self.error(join(path, key), f"unknown key (allowed here: {allowed})")
        kwargs: dict[str, Any] = {}
        for key, f in fields.items():
            if key in raw:
                kwargs[f.name] = self.value(hints[f.name], raw[key], join(path, key), f.metadata)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self.error(join(path, key), "is required")
        if len(self.issues) > before:
            return None
        return self.construct(cls, kwargs, path, raw)

    def construct(self, cls: type[T], kwargs: dict[str, Any], path: str,
                  raw: Mapping[str, Any]) -> T | None:
        try:
            return cls(**kwargs)
        except OptionError as exc:
            secret = _is_secret(cls, exc.key)
            self.error(join(path, exc.key), exc.message, exc.value, secret=secret)
        except ValueError as exc:
            self.error(path, str(exc))
        return None

    def value(self, hint: Any, raw: object, path: str, meta: Mapping[str, Any]) -> Any:
        origin = get_origin(hint)
        if origin in (Union, types.UnionType):
            options = [a for a in get_args(hint) if a is not type(None)]
            if len(options) == 1:
                return self.value(options[0], raw, path, meta)
            raise TypeError(f"unsupported union {hint}")  # a schema bug, not user input
        if origin is Literal:
            choices = get_args(hint)
            if raw not in choices:
                self.error(path, "must be one of " + ", ".join(map(str, choices)), raw)
            return raw
        if origin is tuple:
            item = get_args(hint)[0]
            if not isinstance(raw, list):
                self.error(path, "must be a list", raw, secret=bool(meta.get(SECRET)))
                return ()
            return tuple(self.value(item, v, join(path, i), meta) for i, v in enumerate(raw))
        if origin in (Mapping, dict, typing.Mapping):
            _, item = get_args(hint)
            if not isinstance(raw, Mapping):
                self.error(path, "must be a table", raw)
                return {}
            return {str(k): self.value(item, v, join(path, str(k)), meta) for k, v in raw.items()}
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return self.table(hint, raw, path)
        return self.scalar(hint, raw, path, meta)

    def scalar(self, hint: Any, raw: object, path: str, meta: Mapping[str, Any]) -> Any:
        if meta.get(DURATION):
            if not isinstance(raw, str):
                self.error(path, 'must be a duration like "30s"', raw)
                return 0.0
            try:
                seconds = parse_duration(raw)
            except ValueError:
                self.error(path, 'must be a duration like "30s"', raw)
                return 0.0
            if seconds > MAX_SECONDS:
                self.error(path, f"must be at most {format_duration(MAX_SECONDS)}", raw)
                return 0.0
            return seconds
        if hint is bool:
            if not isinstance(raw, bool):
                self.error(path, "must be true or false", raw)
            return raw
        if hint is int:
            if not isinstance(raw, int) or isinstance(raw, bool):
                self.error(path, "must be a whole number", raw)
            elif not -2**63 <= raw < 2**63:  # TOML's range; SQLite and JSON-RPC take no more
                self.error(path, "must be a whole number within 64 bits", raw)
                return 0
            return raw
        if hint is float:
            if not isinstance(raw, int | float) or isinstance(raw, bool):
                self.error(path, "must be a number", raw)
                return 0.0
            try:
                number = float(raw)
            except OverflowError:  # an int past float's range
                number = math.inf
            if not math.isfinite(number):
                self.error(path, "must be a finite number", raw)
                return 0.0
            return number
        if hint is str:
            secret = bool(meta.get(SECRET))
            if not isinstance(raw, str):
                self.error(path, "must be a string", raw, secret=secret)
            elif raw.startswith("env:") and not secret:
                self.error(path, "does not read env: values; write the value itself", raw)
            elif raw.startswith("env:") and not raw[4:].isidentifier():
                self.error(path, "env: must be followed by a variable name", raw)
            return raw
        raise TypeError(f"unsupported schema type {hint}")  # a schema bug, not user input


def _is_secret(cls: type, name: str) -> bool:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return bool(f.metadata.get(SECRET))
    return False
