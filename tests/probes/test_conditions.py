"""JSON field conditions: the parser (with error positions) and evaluation semantics."""

from __future__ import annotations

from typing import Any

import pytest

from probes.base import OptionError
from probes.conditions import Condition, ConditionError, parse_condition

DOC: dict[str, Any] = {
    "result": {"height": 42, "ok": True, "none": None, "name": "node-1",
               "items": [{"name": "a"}, {"name": "b"}], "odd key": 7, "ratio": 1.0},
}


@pytest.mark.parametrize(("text", "path", "op", "expected", "length"), [
    ("result.height > 100", ("result", "height"), ">", 100, False),
    ("result.items[0].name == \"a\"", ("result", "items", 0, "name"), "==", "a", False),
    ("  result.items[-1]   exists  ", ("result", "items", -1), "exists", None, False),
    ("len(result.items)>=2", ("result", "items"), ">=", 2, True),
    ("len( $ ) == 1", (), "==", 1, True),
    ("$.result.ok != false", ("result", "ok"), "!=", False, False),
    ('$["result"]["odd key"] <= 7.5', ("result", "odd key"), "<=", 7.5, False),
    ("== null", (), "==", None, False),
    ("result.name<\"z\"", ("result", "name"), "<", "z", False),
])
def test_parses(text: str, path: tuple[str | int, ...], op: str, expected: object,
                length: bool) -> None:
    assert parse_condition(text) == Condition(text, path, op, expected, length)


@pytest.mark.parametrize(("text", "position", "message"), [
    ("result.height >> 1", 15, "expected a JSON number"),
    ("result.height >", 15, "expected a JSON number"),
    ("result.height = 1", 14, "expected an operator"),
    ("result.height", 13, "expected an operator"),
    ("result. == 1", 7, "expected a field name after '.'"),
    ("len(result.items > 1", 17, "expected ')'"),
    ('len(result) == "3"', 15, "len() compares with a number"),
    ("result.name == 'a'", 15, "(strings need double quotes)"),
    ("result == {}", 10, "expected a JSON number"),
    ("result == NaN", 10, "expected a JSON number"),
    ("result == 1 2", 12, "unexpected text"),
    ("result[x] == 1", 7, "expected an index like [0]"),
    ("result[0 == 1", 8, "expected ']'"),
    ("len(a) exists", 7, "expected an operator (==, !=, <, <=, >, >=) at"),
])
def test_parse_errors_point_at_the_column(text: str, position: int, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        parse_condition(text, "json[3]")
    error = caught.value
    assert isinstance(error, OptionError)
    assert (error.key, error.value, error.position) == ("json[3]", text, position)
    assert message in error.message
    assert error.message.endswith(f"at column {position + 1} of {text!r}")


@pytest.mark.parametrize(("text", "ok", "explanation"), [
    ("result.height > 100", False, "got 42"),
    ("result.height >= 42", True, "got 42"),
    ("result.ratio == 1", True, "got 1.0"),  # JSON numbers: 1 and 1.0 are one value
    ("result.ok == 1", False, "got true"),  # but true is not 1
    ("result.ok == true", True, "got true"),
    ("result.none == null", True, "got null"),
    ("result.none exists", True, "found null"),
    ("result.name > \"node-0\"", True, 'got "node-1"'),
    ("result.name > 5", False, 'got "node-1", a string cannot be ordered against a number'),
    ("result.items[5].name == \"x\"", False, "result.items has 2 items, no [5]"),
    ("result.height.x exists", False, "result.height is a number, not an object"),
    ("result.items.name exists", False, "result.items is an array, not an object"),
    ("result.name[0] exists", False, "result.name is a string, not an array"),
    ("result.missing == 1", False, "no field 'missing' in result"),
    ("len(result.name) == 6", True, "got length 6"),
    ("len(result) > 3", True, "got length 7"),
    ("len(result.height) > 0", False, "got 42, a number has no length"),
    ("$.result.items[-1].name != \"a\"", True, 'got "b"'),
])
def test_evaluation(text: str, ok: bool, explanation: str) -> None:
    assert parse_condition(text).evaluate(DOC) == (ok, f"{text}: {explanation}")


def test_the_root_may_be_any_json_value() -> None:
    assert parse_condition("len($) == 3").evaluate([1, 2, 3])[0]
    assert parse_condition("$ == \"pong\"").evaluate("pong")[0]
    assert not parse_condition("a exists").evaluate([1])[0]


def test_long_values_are_shortened_in_explanations() -> None:
    ok, explanation = parse_condition('text == "short"').evaluate({"text": "x" * 500})
    assert not ok
    assert len(explanation) < 100
    assert explanation.endswith("…")
