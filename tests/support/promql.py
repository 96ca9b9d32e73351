"""PromQL as our dashboards write it, read back by the tests: every expression of a dashboard
(`queries`), Grafana template variables filled in (`substitute`), the metric names an
expression reads, and the `label_values(...)` queries of template variables.

These are text tools, not a PromQL parser: they understand exactly the forms our dashboards
use (selectors, functions, aggregations with `by`/`without`, vector matching, ranges) and a
real Prometheus remains the judge of validity (tests/dashboards/test_queries_on_prometheus.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

# What Grafana fills in itself; a test may override any of them through `variables`.
BUILTINS: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

# $name, ${name} and ${name:format} (Grafana also accepts [[name]], which we never write)
_VARIABLE = re.compile(r"\$(?:\{(?P<braced>\w+)(?::[^}]*)?\}|(?P<plain>\w+))")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<selector>.*),)?\s*(?P<label>\w+)\s*\)\s*$",
                           re.DOTALL)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^}]*\}")
_BRACKETS = re.compile(r"\[[^\]]*\]")
# the label lists of aggregations and vector matching: `by (le)`, `on (target)`, ...
_LABEL_LIST = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE)
_NAME = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "atan2",
})


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """`expr` with every `$var`, `${var}` and `${var:format}` replaced by `variables[var]`
    and Grafana's own `$__rate_interval`, `$__interval`, `$__range` (and their `_s`/`_ms`
    forms) by `variables` or else BUILTINS. The value goes in as given: for a multi-value
    variable, pass what Grafana would write (`(a|b)` for Prometheus, or an `allValue`).
    Raises KeyError naming a variable that has no value, so a typo cannot pass silently."""
    def value(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        if name in variables:
            return variables[name]
        if name in BUILTINS:
            return BUILTINS[name]
        raise KeyError(f"no value for template variable ${name} in {expr!r}")

    return _VARIABLE.sub(value, expr)


def variable_names(expr: str) -> set[str]:
    """The template variables `expr` refers to (Grafana's built-ins included)."""
    return {m.group("braced") or m.group("plain") for m in _VARIABLE.finditer(expr)}


def label_values(query: str) -> tuple[str, str] | None:
    """`(selector, label)` of a `label_values(selector, label)` variable query (the selector
    is "" in the one-argument form), or None for any other query."""
    match = _LABEL_VALUES.match(query)
    if match is None:
        return None
    return (match.group("selector") or "").strip(), match.group("label")


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` reads: every bare identifier that is not a function, a
    keyword, a label name or part of a string, a duration or a number."""
    text = _STRING.sub('""', expr)
    text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    names: set[str] = set()
    for match in _NAME.finditer(text):
        name, call = match.group(1), match.group(2)
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


@dataclass(frozen=True)
class Query:
    """One PromQL expression of a dashboard. For a template variable's `label_values(...)`
    query, `panel_title` is `variable <name>` and `expr` is the series selector whose label
    values the variable lists."""

    dashboard_uid: str
    panel_title: str
    expr: str


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel of `dashboard`, including those inside collapsed rows; rows excluded."""
    for panel in dashboard.get("panels") or []:
        if panel.get("type") == "row":
            yield from panel.get("panels") or []
        else:
            yield panel


def queries(dashboard: Mapping[str, Any]) -> list[Query]:
    """Every PromQL expression of `dashboard`: its query variables' series selectors first
    (in dependency order, as Grafana resolves them), then each panel's targets."""
    uid = str(dashboard["uid"])
    found: list[Query] = []
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") != "query":
            continue
        text = var.get("query")
        if isinstance(text, Mapping):
            text = text.get("query", "")
        parsed = label_values(str(text))
        if parsed is None:
            raise ValueError(f"{uid}: variable {var.get('name')}: not a label_values() query:"
                             f" {text!r}")
        selector, _label = parsed
        if selector:
            found.append(Query(uid, f"variable {var['name']}", selector))
    for panel in panels(dashboard):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if expr:
                found.append(Query(uid, str(panel.get("title", "")), str(expr)))
    return found


def query_variables(dashboard: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The query variables of `dashboard` as (name, series selector, label), in order."""
    out: list[tuple[str, str, str]] = []
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if var.get("type") == "query":
            parsed = label_values(str(var.get("query", "")))
            if parsed is not None:
                out.append((str(var["name"]), parsed[0], parsed[1]))
    return out
