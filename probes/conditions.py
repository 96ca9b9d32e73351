"""JSON field conditions of the http probe: `result.height > 100`, `status exists`,
`len(result.items) >= 1`. Parsed once when the config loads, so a mistake points at its
column; evaluated per probe by walking the document (no eval).
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from probes.base import OptionError

Path = tuple[str | int, ...]
_OPS = ("==", "!=", "<=", ">=", "<", ">")  # two-character operators first
_NAME = re.compile(r"[^\s.\[\]()<>=!\"']+")
_INDEX = re.compile(r"-?\d+")
_SHOW_MAX = 60
_ORDER: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


class ConditionError(OptionError):
    """A condition that does not parse; `position` is the 0-based offset of the problem."""

    def __init__(self, key: str, condition: str, position: int, message: str) -> None:
        super().__init__(key, f"{message} at column {position + 1} of {condition!r}", condition)
        self.position = position


@dataclass(frozen=True)
class Condition:
    text: str
    path: Path
    op: str  # one of _OPS, or "exists"
    expected: object = None
    length: bool = False  # compare len(value) rather than the value

    def evaluate(self, doc: object) -> tuple[bool, str]:
        """Whether the condition holds for `doc`, and what was found, for the failure detail."""
        found, value, where = _resolve(doc, self.path)
        if self.op == "exists":
            return found, f"{self.text}: {f'found {_kind(value)}' if found else where}"
        if not found:
            return False, f"{self.text}: {where}"
        shown = _show(value)
        if self.length:
            if not isinstance(value, str | list | dict):
                return False, f"{self.text}: got {shown}, {_kind(value)} has no length"
            value = len(value)
            shown = f"length {value}"
        ok = _compare(value, self.op, self.expected)
        if ok is None:
            return False, (f"{self.text}: got {shown}, {_kind(value)} cannot be ordered "
                           f"against {_kind(self.expected)}")
        return ok, f"{self.text}: got {shown}"


def parse_condition(text: str, key: str = "json") -> Condition:
    """Parses one condition; errors name `key` (e.g. `json[2]`) and the column."""
    return _Parser(text, key).parse()


class _Parser:
    def __init__(self, text: str, key: str) -> None:
        self.text, self.key, self.pos = text, key, 0

    def error(self, message: str, position: int | None = None) -> ConditionError:
        at = self.pos if position is None else position
        return ConditionError(self.key, self.text, at, message)

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def parse(self) -> Condition:
        self.skip_spaces()
        length = self.text.startswith("len(", self.pos)
        if length:
            self.pos += 4
            self.skip_spaces()
        path = self.path()
        self.skip_spaces()
        if length:
            if not self.text.startswith(")", self.pos):
                raise self.error("expected ')' after the path")
            self.pos += 1
            self.skip_spaces()
        if not length and self.text.startswith("exists", self.pos):
            self.pos += len("exists")
            op, expected = "exists", None
        else:
            op = next((o for o in _OPS if self.text.startswith(o, self.pos)), "")
            if not op:
                also = "" if length else " or 'exists'"
                raise self.error(f"expected an operator (==, !=, <, <=, >, >=){also}")
            self.pos += len(op)
            self.skip_spaces()
            start = self.pos
            expected = self.literal()
            if length and (not isinstance(expected, int | float) or isinstance(expected, bool)):
                raise self.error("len() compares with a number", start)
        self.skip_spaces()
        if self.pos < len(self.text):
            raise self.error("unexpected text")
        return Condition(self.text, path, op, expected, length)

    def path(self) -> Path:
        steps: list[str | int] = []
        if self.text.startswith("$", self.pos):
            self.pos += 1
        elif (name := _NAME.match(self.text, self.pos)) and name.group() != "exists":
            steps.append(name.group())
            self.pos = name.end()
        while self.pos < len(self.text) and self.text[self.pos] in ".[":
            if self.text[self.pos] == ".":
                self.pos += 1
                name = _NAME.match(self.text, self.pos)
                if not name:
                    raise self.error("expected a field name after '.'")
                steps.append(name.group())
                self.pos = name.end()
            else:
                steps.append(self.bracket())
        return tuple(steps)

    def bracket(self) -> str | int:
        """`[3]` (an array index, negative counts from the end) or `["a key"]`."""
        self.pos += 1
        step: str | int
        if index := _INDEX.match(self.text, self.pos):
            step, self.pos = int(index.group()), index.end()
        elif self.text.startswith('"', self.pos):
            start = self.pos
            key = self.literal()
            if not isinstance(key, str):
                raise self.error("expected a quoted key", start)
            step = key
        else:
            raise self.error('expected an index like [0] or a key like ["name"]')
        if not self.text.startswith("]", self.pos):
            raise self.error("expected ']'")
        self.pos += 1
        return step

    def literal(self) -> object:
        start = self.pos
        try:
            value, self.pos = _DECODER.raw_decode(self.text, self.pos)
        except ValueError:
            hint = " (strings need double quotes)" if self.text[start:start + 1] == "'" else ""
            raise self.error(f"expected a JSON number, \"string\", true, false or null{hint}",
                             start) from None
        if isinstance(value, dict | list):
            raise self.error("expected a JSON number, \"string\", true, false or null", start)
        return value


def _resolve(doc: object, path: Path) -> tuple[bool, object, str]:
    """(found, value, why not found) for `path` in `doc`."""
    value, where = doc, "$"
    for step in path:
        if isinstance(step, int):
            if not isinstance(value, list):
                return False, None, f"{where} is {_kind(value)}, not an array"
            if not -len(value) <= step < len(value):
                items = f"{len(value)} item" + ("" if len(value) == 1 else "s")
                return False, None, f"{where} has {items}, no [{step}]"
            value, where = value[step], f"{where}[{step}]"
        else:
            if not isinstance(value, dict):
                return False, None, f"{where} is {_kind(value)}, not an object"
            if step not in value:
                return False, None, f"no field {step!r} in {where}"
            value, where = value[step], step if where == "$" else f"{where}.{step}"
    return True, value, where


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


def _compare(value: object, op: str, expected: object) -> bool | None:
    """JSON semantics: true is not 1, 1 equals 1.0; None when the two cannot be ordered."""
    if op in ("==", "!="):
        same = _kind(value) == _kind(expected) and value == expected
        return same if op == "==" else not same
    kinds = {_kind(value), _kind(expected)}
    if kinds != {"a number"} and kinds != {"a string"}:
        return None
    return bool(_ORDER[op](value, expected))


def _show(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHOW_MAX else text[: _SHOW_MAX - 1] + "…"
