"""Summary templates: placeholders filled from values and labels, absent names as `?`,
compact numbers, literal braces, and the strict check the config loader applies."""

from __future__ import annotations

import pytest

from alerts.template import check, format_value, pieces, render

VALUES: dict[str, object] = {"target": "eth-1", "block_lag": 12.0, "ratio": 0.25,
                             "pi": 3.14159, "syncing": True, "peers": 3, "tiny": -0.0001}

RENDER = [
    ("{target} is {block_lag} blocks behind", "eth-1 is 12 blocks behind"),
    ("{ratio} failing, pi {pi}, {peers} peers", "0.25 failing, pi 3.142, 3 peers"),
    ("syncing: {syncing}", "syncing: true"),
    ("{head_age_seconds}s old", "?s old"),  # absent
    ("{{literal}} and {{{target}}}", "{literal} and {eth-1}"),
    ("}}{{", "}{"),
    ("stray { and } and {1} and { target } and {target", "stray { and } and {1} and "
     "{ target } and {target"),
    ("{tiny}", "0"),
    ("", ""),
    ("no placeholders", "no placeholders"),
]


@pytest.mark.parametrize(("template", "expected"), RENDER, ids=[r[0] or "empty" for r in RENDER])
def test_render(template: str, expected: str) -> None:
    assert render(template, VALUES) == expected


def test_format_value() -> None:
    assert [format_value(v) for v in (12.0, 0.25, 3.14, 2.0004, 1e20, 5, False, "x", None)] \
        == ["12", "0.25", "3.14", "2", "100000000000000000000", "5", "false", "x", "?"]


def test_pieces_split_text_and_names() -> None:
    assert pieces("{{a}} {target}: {x}!") == [("text", "{a} "), ("name", "target"),
                                                ("text", ": "), ("name", "x"), ("text", "!")]
    assert pieces("") == []


def test_check_reports_stray_braces_with_positions() -> None:
    assert check("{target} is {{fine}} and {{{block_lag}}}") == []
    assert check("oops {target") == [
        "stray '{' at position 5 (placeholders look like {name}; write {{ for a literal {)"]
    assert check("a } b") == [
        "stray '}' at position 2 (placeholders look like {name}; write }} for a literal })"]
    assert len(check("{ x } {1}")) == 4


def test_check_reports_unknown_names_when_given_the_allowed_ones() -> None:
    allowed = {"target", "block_lag"}
    assert check("{target} {block_lag}", allowed) == []
    assert check("{target} {blok_lag}", allowed) == [
        "unknown name 'blok_lag' at position 9; did you mean 'block_lag'?"]
    assert check("{zzz}", allowed) == ["unknown name 'zzz' at position 0"]
