"""Rule conditions: a table of conditions with values and the three-valued answer (absent
values, precedence, kinds), and a table of mistakes with the exact position reported."""

from __future__ import annotations

import dataclasses

import pytest

from alerts import ConditionError
from alerts.expr import VALUE_KINDS, Compare, Operand, parse
from probes.base import Value

V: dict[str, Value] = {"block_lag": 7, "syncing": False, "success": True, "failure_reason": "",
                       "peers": 2, "head_age_seconds": 12.5, "server_state": "full",
                       "status_code": 200}

GOOD: list[tuple[str, dict[str, Value], bool | None]] = [
    ("block_lag > 5", V, True),
    ("block_lag > 7", V, False),
    ("block_lag >= 7", V, True),
    ("block_lag == 7.0", V, True),  # numbers compare as floats
    ("block_lag != 7", V, False),
    ("5 < block_lag", V, True),
    ("block_lag > -1", V, True),
    ("head_age_seconds <= 12.5", V, True),
    ("head_age_seconds < 1e2", V, True),
    ("head_age_seconds>12", V, True),
    ("syncing", V, False),
    ("not syncing", V, True),
    ("syncing == false", V, True),
    ("success == true", V, True),
    ('server_state == "full"', V, True),
    ("server_state != 'full'", V, False),
    ('failure_reason == ""', V, True),
    ('failure_reason == "say \\"hi\\""', {"failure_reason": 'say "hi"'}, True),
    ("(block_lag > 5)", V, True),
    ("not not syncing", V, False),
    ("TRUE and Not syncing", V, True),
    ("true", {}, True),
    # absent values are unknown, and unknown spreads unless and/or is decided without it
    ("lib_lag > 5", V, None),
    ("not lib_lag > 5", V, None),
    ("success == false", {}, None),
    ("lib_lag > 5 and block_lag > 100", V, False),
    ("lib_lag > 5 and block_lag > 5", V, None),
    ("lib_lag > 5 or block_lag > 5", V, True),
    ("lib_lag > 5 or block_lag > 100", V, None),
    ("false or lib_lag > 1", {}, None),
    ("not (lib_lag > 5 and block_lag > 100)", V, True),
    # precedence: or < and < not < comparison
    ("block_lag > 100 and peers > 100 or success", V, True),
    ("success or block_lag > 100 and peers > 100", V, True),
    ("not syncing and block_lag > 100", V, False),
    ("not (syncing or block_lag > 100)", V, True),
    ("not block_lag > 100", V, True),
    # a probe that reports the wrong kind of value gives unknown, never an exception
    ("syncing", {"syncing": "yes"}, None),
    ("block_lag > 5", {"block_lag": True}, None),
    ('server_state == "full"', {"server_state": 4}, None),
]


@pytest.mark.parametrize(("text", "values", "expected"), GOOD, ids=[g[0] for g in GOOD])
def test_condition_evaluates(text: str, values: dict[str, Value], expected: bool | None) -> None:
    assert parse(text).evaluate(values) is expected


BAD: list[tuple[str, int, str]] = [
    # (condition, position, start of the message)
    ("", 0, "missing operand"),
    ("   ", 3, "missing operand"),
    ("block_lag >", 11, "missing operand"),
    ("block_lag > and peers > 1", 12, "missing operand"),
    ("not", 3, "missing operand"),
    ("(block_lag > 5", 0, "unbalanced '('"),
    ("((block_lag > 5) and peers > 1", 0, "unbalanced '('"),
    ("block_lag > 5)", 13, "unbalanced ')'"),
    ("(block_lag > 5 peers", 15, "unexpected 'peers', expected ')'"),
    ("block_lag > 5 peers", 14, "unexpected 'peers'"),
    ("block_lag > 5 > 3", 14, "unexpected '>'"),
    ('failure_reason == "timeout', 18, "unterminated string"),
    ("failure_reason == 'a\\'", 18, "unterminated string"),
    ("block_lag > 5 & peers > 1", 14, "unknown character '&' (write `and`)"),
    ("block_lag # 5", 10, "unknown character '#'"),
    ("block_lag = 5", 10, "unknown character '=' (write `==` to compare)"),
    ("5abc > 1", 0, "malformed number"),
    ("block_lag > 1.2.3", 12, "malformed number"),
    ("blok_lag > 5", 0, "unknown value name 'blok_lag'; did you mean 'block_lag'?"),
    ("peers > 1 and colour == 'red'", 14, "unknown value name 'colour'"),
    ("failure_reason < 5", 0, "< needs numbers, but failure_reason is a string"),
    ("5 >= server_state", 5, ">= needs numbers, but server_state is a string"),
    ("syncing > 0", 0, "> needs numbers, but syncing is a bool"),
    ('block_lag == "5"', 13, "cannot compare a number with a string"),
    ('block_lag > "5"', 12, "> needs numbers, but '5' is a string"),
    ("success == 1", 11, "cannot compare a bool with a number"),
    ("block_lag", 0, "block_lag is a number, not true/false; compare it, e.g. `block_lag > 0`"),
    ("failure_reason", 0, 'failure_reason is a string, not true/false'),
    ("peers > 1 and 5", 14, "5 is a number"),
]


@pytest.mark.parametrize(("text", "position", "message"), BAD, ids=[b[0] or "empty" for b in BAD])
def test_mistakes_point_at_their_position(text: str, position: int, message: str) -> None:
    with pytest.raises(ConditionError) as info:
        parse(text)
    assert info.value.position == position
    assert info.value.message.startswith(message), info.value.message
    assert str(info.value).endswith(f" at position {position}: "
                                    f"{text[:position]}>>>{text[position:]}")


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConditionError) as info:
        parse("lag > 5")
    for name in VALUE_KINDS:
        assert name in info.value.message
    # the synthetic service target's values are known too
    assert {"delivery_failure_ratio", "oldest_pending_age_seconds", "queue_depth"} <= set(
        VALUE_KINDS)


def test_names_in_order_of_first_use() -> None:
    c = parse("peers < 3 or block_lag > 5 and not (peers == 0 or syncing)")
    assert c.names == ("peers", "block_lag", "syncing")
    assert c.text == "peers < 3 or block_lag > 5 and not (peers == 0 or syncing)"


def test_parsed_once_and_frozen() -> None:
    c = parse("block_lag > 5")
    assert parse("block_lag > 5") is c  # cached: the engine's second parse is free
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.text = "other"  # type: ignore[misc]
    assert c.root == Compare(">", Operand(0, name="block_lag"), Operand(12, literal=5))
    assert parse("syncing").root == Compare("==", Operand(0, name="syncing"),
                                            Operand(0, literal=True))
