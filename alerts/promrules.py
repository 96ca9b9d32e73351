"""Prometheus alerting rules equivalent to ours (`crypitor rules export`), for operators who
alert from Prometheus: each condition becomes PromQL over the series we export, named by
`catalog`, so a renamed metric cannot leave the exported rules behind.

How a condition translates. Ours fires for a target when it is True under three-valued
logic, where an absent value makes a comparison unknown. A PromQL filter keeps the series for
which it holds, and an absent series is neither kept nor negated, which is the same unknown.
So the condition is first put in negation normal form: `not` is pushed down with De Morgan's
laws (which hold in three-valued logic) onto the comparisons, where it flips the operator
(`not block_lag > 5` is `block_lag <= 5`: absent stays absent, as `not unknown` is unknown).
Then a comparison is a filter (`crypitor_chain_block_lag > 5`), `and` is `and on(target)`
(keep the targets that pass both sides) and `or` is `or on(target)` (targets passing either).
`true`/`false` are 1/0. `match` becomes label matchers where every metric of the rule carries
those labels, else a join with `probe_success{...}`, which carries `type` and every target
label. A rule is left out, with a comment saying why, when a value has no series (text values
such as `failure_reason`) or when it mixes the webhook service's values with a target's.
A rule that fires after N failed probes in a row (TargetDown) reads the consecutive-failures
gauge, so it fires after as many probes as ours, whatever the target's interval. A summary's
values other than the one the expression yields are queried by the annotation's template;
runbook_url and dashboard_url become annotations.

SLOs (`export(..., slos=...)`) follow Sloth's shape: `slo:sli_error:ratio_rate<window>`
recording rules over the raw counters (probes of the matching targets; deliveries that
ended, and those delivered within `within` from the latency histogram), the objective, the
remaining budget of the SLO's window, and one SLOBurnRate alert per SLO and burn-rate pair
of `alerts.builtin.BURN_RATES`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import yaml

import catalog.metrics as m
from alerts import AlertError
from alerts.builtin import BURN_RATES, BURN_WINDOWS, RuleSpec
from alerts.expr import VALUE_KINDS, And, Compare, Node, Not, Operand, compare
from alerts.template import pieces
from catalog import MetricDef

# value name → the metric holding it, and the PromQL giving the value from its selector
_SERIES: Mapping[str, tuple[MetricDef, Callable[[str], str]]] = {
    "success": (m.PROBE_SUCCESS, str),
    "duration_seconds": (m.PROBE_DURATION, str),
    # the exporter writes 0 when no answer came; for us the value is then absent
    "status_code": (m.PROBE_HTTP_STATUS, lambda s: f"({s} != 0)"),
    "cert_expiry_days": (m.PROBE_SSL_EXPIRY, lambda s: f"(({s} - time()) / 86400)"),
    "body_bytes": (m.PROBE_HTTP_BODY_BYTES, str),
    "connect_seconds": (m.PROBE_TCP_CONNECT, str),
    "delivery_seconds": (m.PROBE_CANARY_DELIVERY, str),
    "head_block": (m.CHAIN_HEAD, str),
    "block_lag": (m.CHAIN_LAG, str),
    "head_age_seconds": (m.CHAIN_HEAD_AGE, str),
    "peers": (m.CHAIN_PEERS, str),
    "syncing": (m.CHAIN_SYNCING, str),
    "chain_id": (m.CHAIN_ID, str),
    "lib_lag": (m.CHAIN_LIB_LAG, str),
    "load_factor": (m.CHAIN_LOAD_FACTOR, str),
    "queue_depth": (m.WEBHOOK_QUEUE_DEPTH, str),
    "oldest_pending_age_seconds": (m.WEBHOOK_OLDEST_PENDING, str),
    "deep_reorgs_1h": (m.FOLLOWER_DEEP_REORGS, lambda s: f"increase({s}[1h])"),
    # over the attempts of the last 5 minutes, as alerting_setup.DELIVERY_WINDOW
    "delivery_failure_ratio": (m.WEBHOOK_DELIVERIES, lambda s: (
        f'(1 - sum(rate({s}{{outcome="success"}}[5m])) / sum(rate({s}[5m])))')),
}
# values shown as whole numbers in summaries (the others with four significant digits)
_WHOLE = frozenset({"status_code", "body_bytes", "head_block", "block_lag", "peers",
                    "chain_id", "lib_lag", "queue_depth", "deep_reorgs_1h"})
# the synthetic targets (alerts.builtin) whose series carry no target labels
_SYNTHETIC = ({"type": "service"}, {"type": "follower"})
_NO_SERIES = {
    "failure_reason": "is text; no series holds it",
    "server_state": "is text; the exported rank gauge is not a faithful stand-in",
}
# label names our metrics define themselves; any other match key is a target's own label,
# which every per-target series carries
_OWN_LABELS = frozenset({"target"} | {label for d in m.ALL for label in d.labels})
_NEGATED = {"==": "!=", "!=": "==", "<": ">=", ">=": "<", ">": "<=", "<=": ">"}
_FLIPPED = {"==": "==", "!=": "!=", "<": ">", ">": "<", "<=": ">=", ">=": "<="}
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class _Skip(AlertError):
    """The rule has no PromQL equivalent; the message says why."""


@dataclass(frozen=True)
class PromRule:
    name: str
    expr: str
    for_: float
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    notes: tuple[str, ...] = ()  # caveats, written as comments above the rule


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass(frozen=True)
class _Query:
    text: str
    value: str | None  # the value name whose number the result's samples carry ($value)
    compound: bool = False


@dataclass(frozen=True)
class _Translator:
    matchers: str = ""  # `{k="v", ...}` put into every selector, or "" when joined instead
    per_target: bool = True  # series carry `target`: match sides on it

    def node(self, node: Node, negate: bool) -> _Query | bool:
        if isinstance(node, Not):
            return self.node(node.operand, not negate)
        if isinstance(node, Compare):
            return self.compare(node, negate)
        # De Morgan: a negated `and` is an `or` of the negated operands, and the reverse
        conjunction = isinstance(node, And) != negate
        parts = [self.node(o, negate) for o in node.operands]
        if (not conjunction) in parts:  # False in an and, True in an or: decides it
            return not conjunction
        queries = [p for p in parts if isinstance(p, _Query)]
        if not queries:
            return conjunction
        if len(queries) == 1:
            return queries[0]
        op = ("and" if conjunction else "or") + (" on(target)" if self.per_target else "")
        text = f" {op} ".join(f"({q.text})" if q.compound else q.text for q in queries)
        values = {q.value for q in queries}
        value = queries[0].value if conjunction else (values.pop() if len(values) == 1 else None)
        return _Query(text, value, compound=True)

    def compare(self, node: Compare, negate: bool) -> _Query | bool:
        op = _NEGATED[node.op] if negate else node.op
        left, right = node.left, node.right
        if not left.name and not right.name:
            return bool(compare(left.literal, op, right.literal))
        if not left.name:
            left, right, op = right, left, _FLIPPED[op]
        if right.name:
            on = " on(target)" if self.per_target else ""
            return _Query(f"{self.series(left)} {op}{on} {self.series(right)}", left.name)
        return _Query(f"{self.series(left)} {op} {_number(right.literal)}", left.name)

    def series(self, operand: Operand) -> str:
        metric, expression = _SERIES[operand.name]
        return expression(metric.name + self.matchers)


def translate(rule: RuleSpec) -> PromRule | Skipped:
    try:
        return _translate(rule)
    except _Skip as exc:
        return Skipped(rule.name, str(exc))


def _translate(rule: RuleSpec) -> PromRule:
    names = rule.condition.names
    for name in names:
        if name not in _SERIES:
            raise _Skip(f"{name} {_NO_SERIES.get(name, 'has no series')}")
    scopes = {_SERIES[n][0].per_target for n in names}
    if len(scopes) > 1:
        raise _Skip("it mixes the webhook service's values with a target's")
    for key in rule.match:
        if not _LABEL_NAME.fullmatch(key):
            raise _Skip(f"match key {key!r} is not a Prometheus label name")
    per_target = scopes != {False}
    if not per_target and rule.match and dict(rule.match) not in _SYNTHETIC:
        raise _Skip("the webhook service's series carry no target labels to match "
                    f"{dict(rule.match)} on")
    matchers = _matchers(rule.match) if per_target else ""
    metrics = {_SERIES[n][0] for n in names}
    inline = all(_carries(d, key) for d in metrics for key in rule.match)
    translator = _Translator(matchers if inline else "", per_target)
    query = translator.node(rule.condition.root, negate=False)
    if isinstance(query, bool):
        raise _Skip(f"the condition is always {str(query).lower()}")
    expr, value, for_ = query.text, query.value, rule.for_
    notes: tuple[str, ...] = ()
    if rule.failures and _is_down(rule.condition.root):
        # N failed probes in a row, counted by the monitor whatever the target's interval
        expr = (f"{m.PROBE_CONSECUTIVE_FAILURES.name}{matchers if inline else ''} >= "
                f"{rule.failures}")
        value, for_ = None, 0.0
    elif rule.failures:
        notes = (f"fires natively after {rule.failures} failed evaluations in a row; Prometheus "
                 "counts time, not probes, so choose a `for` that suits your scrape interval",)
    if matchers and not inline:
        expr = f"({expr}) and on(target) {m.PROBE_SUCCESS.name}{matchers}"
    annotations = {"summary": _summary(rule, value),
                   "condition": _go_text(rule.condition.text), **_links(rule)}
    return PromRule(rule.name, expr, for_, {"severity": rule.severity}, annotations, notes)


def _is_down(node: Node) -> bool:
    """Whether the condition is `success == false` (or a spelling of it)."""
    if isinstance(node, Not):
        inner = node.operand
        return (isinstance(inner, Compare) and inner.op in ("==", "!=")
                and {inner.left.name, inner.right.name} == {"success", ""}
                and (inner.left.literal if not inner.left.name else inner.right.literal)
                is (inner.op == "=="))
    if not isinstance(node, Compare) or node.op not in ("==", "!="):
        return False
    left, right = node.left, node.right
    if {left.name, right.name} != {"success", ""}:
        return False
    literal = left.literal if not left.name else right.literal
    return literal is (node.op == "!=")


def _links(rule: RuleSpec) -> dict[str, str]:
    """The rule's runbook and dashboard links, as annotations (no Go template in them)."""
    out = {}
    if rule.runbook_url:
        out["runbook_url"] = _go_text(rule.runbook_url)
    if rule.dashboard_url:
        out["dashboard_url"] = _go_text(rule.dashboard_url)
    return out


def _carries(metric: MetricDef, key: str) -> bool:
    """Whether every series of `metric` has label `key` meaning what the target's label does."""
    return key == "target" or (key == "type" and key in metric.labels) or key not in _OWN_LABELS


def _matchers(match: Mapping[str, str]) -> str:
    if not match:
        return ""
    # a PromQL string takes JSON's escapes, but raw (not surrogate-paired) non-ASCII text
    pairs = (f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(match.items()))
    return "{" + ", ".join(pairs) + "}"


def _number(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return repr(value)


def _go_text(text: str) -> str:
    """Literal text in a Prometheus (Go) template: a `{` could open an action, so each is
    written as an action printing it."""
    return text.replace("{", '{{ "{" }}')


def _summary(rule: RuleSpec, value: str | None,
             lookup: Callable[[str], str | None] | None = None) -> str:
    """The summary as a Go template: the expression's own value is `$value`, labels are
    `$labels`, and any other value is queried (`lookup` may answer for a name first)."""
    out: list[str] = []
    for kind, text in pieces(rule.summary or f"{rule.name} on {{target}}"):
        found = lookup(text) if lookup is not None and kind == "name" else None
        if kind == "text":
            out.append(_go_text(text))
        elif found is not None:
            out.append(found)
        elif text == value:
            out.append("{{ $value }}")
        elif text in ("alertname", "severity"):
            out.append(_go_text(rule.name if text == "alertname" else rule.severity))
        elif text in VALUE_KINDS:
            out.append(_queried(text))
        else:
            out.append(f"{{{{ $labels.{text} }}}}")
    return "".join(out)


def _go_string(text: str) -> str:
    """`text` as a Go string literal inside a template action."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _shown(name: str) -> str:
    """The template pipeline ending that prints a queried sample's value as ours would."""
    return '| printf "%.0f"' if name in _WHOLE else '| printf "%.4g"'


def _queried(name: str) -> str:
    """A template action printing value `name` of the alert's target, queried when the
    annotation is rendered ("unknown" when no series holds it then)."""
    if name == "failure_reason":  # the reason most counted lately
        query = (f"topk(1, increase({m.PROBE_FAILURES.name}{{target=%q}}[15m]))")
        return (f"{{{{ with printf {_go_string(query)} $labels.target | query }}}}"
                '{{ . | first | label "reason" }}{{ else }}unknown{{ end }}')
    if name == "server_state":  # the rank gauge, named back
        ranks = "".join(f"{{{{ {'if' if i == 0 else 'else if'} eq $rank {i}.0 }}}}{state}"
                        for i, state in enumerate(m.XRPL_SERVER_STATES))
        query = f"{m.CHAIN_SERVER_STATE.name}{{target=%q}}"
        return (f"{{{{ with printf {_go_string(query)} $labels.target | query }}}}"
                f"{{{{ $rank := . | first | value }}}}{ranks}{{{{ else }}}}unknown{{{{ end }}}}"
                "{{ else }}unknown{{ end }}")
    metric, expression = _SERIES[name]
    if metric.per_target:
        query, by = expression(metric.name + "{target=%q}"), "$labels.target"
    elif "chain" in metric.labels:
        query, by = expression(metric.name + "{chain=%q}"), "$labels.chain"
    else:
        return (f"{{{{ with query {_go_string(expression(metric.name))} }}}}"
                f"{{{{ . | first | value {_shown(name)} }}}}{{{{ else }}}}unknown{{{{ end }}}}")
    return (f"{{{{ with printf {_go_string(query)} {by} | query }}}}"
            f"{{{{ . | first | value {_shown(name)} }}}}{{{{ else }}}}unknown{{{{ end }}}}")


class SloSource(Protocol):
    """What an SLO offers the export (monitor.config.SloConfig has this shape)."""

    @property
    def name(self) -> str: ...
    @property
    def kind(self) -> Literal["probe", "webhook_delivery"]: ...
    @property
    def match(self) -> Mapping[str, str]: ...
    @property
    def ratio(self) -> float: ...
    @property
    def window(self) -> float: ...
    @property
    def delivered_within(self) -> float: ...


def _is_slo_rule(rule: RuleSpec) -> bool:
    """The rule alerting on SLO burn rates (it reads the SLOs' synthetic targets)."""
    return dict(rule.match) == {"type": "slo"}


def export(rules: Sequence[RuleSpec], source: str = "", slos: Sequence[SloSource] = ()) -> str:
    """A Prometheus rule file: the group `crypitor` holding every rule that translates, and
    with `slos` the groups `crypitor-slo-sli` (error ratios), `crypitor-slo-meta` (objective,
    burn rate, remaining budget) and `crypitor-slo-alerts` (SLOBurnRate, unless disabled).
    What the rules themselves cannot say (caveats, rules left out and why) heads it as
    comments; the document is written by PyYAML."""
    comments = [
        "Prometheus alerting rules generated by `crypitor rules export`"
        + (f" from {_comment(source)}" if source else "") + ".",
        "Each condition is translated to PromQL over the series Crypitor exports; see",
        "alerts/promrules.py for how three-valued conditions map to PromQL.",
    ]
    notes: list[str] = []
    entries: list[dict[str, object]] = []
    slo_rule = next((r for r in rules if _is_slo_rule(r)), None)
    for rule in rules:
        if _is_slo_rule(rule):
            continue
        result = translate(rule)
        if isinstance(result, Skipped):
            notes.append(f"{result.name} is not exported: {_comment(result.reason)}")
            continue
        notes += [f"{result.name}: {_comment(n)}" for n in result.notes]
        entry: dict[str, object] = {"alert": result.name, "expr": result.expr}
        if result.for_ > 0:
            entry["for"] = prometheus_duration(result.for_)
        entry["labels"] = dict(result.labels)
        entry["annotations"] = dict(result.annotations)
        entries.append(entry)
    if notes:
        comments += ["", *notes]
    groups: list[dict[str, object]] = [{"name": "crypitor", "rules": entries}]
    if slos:
        groups += [{"name": "crypitor-slo-sli", "rules": [r for s in slos for r in _sli(s)]},
                   {"name": "crypitor-slo-meta", "rules": [r for s in slos for r in _meta(s)]}]
        if slo_rule is not None:
            groups.append({"name": "crypitor-slo-alerts",
                           "rules": [r for s in slos for r in _burn_alerts(s, slo_rule)]})
    document = {"groups": groups}
    # no line folding: each PromQL expression stays on one line, as written
    return "".join(f"# {c}\n" if c else "#\n" for c in comments) + \
        yaml.safe_dump(document, sort_keys=False, width=math.inf)


def _slo_windows(slo: SloSource) -> dict[str, float]:
    """The burn-rate windows and the SLO's own, by their Prometheus name."""
    return {**BURN_WINDOWS, prometheus_duration(slo.window): slo.window}


def _sli_error(slo: SloSource, window: str) -> str:
    """PromQL: the share of bad events of `slo` over `window`, as the monitor counts them."""
    if slo.kind == "webhook_delivery":
        le = json.dumps(m.bucket_label(slo.delivered_within))
        ended = '{outcome=~"success|failed|dead"}'
        return (f"1 - sum(rate({m.WEBHOOK_LATENCY.name}_bucket{{le={le}}}[{window}])) / "
                f"sum(rate({m.WEBHOOK_DELIVERIES.name}{ended}[{window}]))")
    match = _matchers(slo.match)
    failed = _matchers({**slo.match, "result": "failure"})
    return (f"(sum(rate({m.PROBES_TOTAL.name}{failed}[{window}])) or vector(0)) / "
            f"sum(rate({m.PROBES_TOTAL.name}{match}[{window}]))")


def _sli(slo: SloSource) -> list[dict[str, object]]:
    return [{"record": f"slo:sli_error:ratio_rate{w}", "expr": _sli_error(slo, w),
             "labels": {"slo": slo.name}} for w in _slo_windows(slo)]


def _record(name: str, expr: str, labels: Mapping[str, str]) -> dict[str, object]:
    return {"record": name, "expr": expr, "labels": dict(labels)}


def _budget(slo: SloSource) -> str:
    return repr(round(1 - slo.ratio, 12))


def _meta(slo: SloSource) -> list[dict[str, object]]:
    selector = _matchers({"slo": slo.name})
    period = prometheus_duration(slo.window)
    return [
        {"record": "slo:objective:ratio", "expr": f"vector({slo.ratio!r})",
         "labels": {"slo": slo.name}},
        {"record": "slo:error_budget:ratio", "expr": f"vector({_budget(slo)})",
         "labels": {"slo": slo.name}},
        *[_record("slo:burn_rate:ratio",
                  f"slo:sli_error:ratio_rate{w}{selector} / {_budget(slo)}",
                  {"slo": slo.name, "window": w}) for w in BURN_WINDOWS],
        {"record": "slo:period_error_budget_remaining:ratio",
         "expr": f"1 - slo:sli_error:ratio_rate{period}{selector} / {_budget(slo)}",
         "labels": {"slo": slo.name}},
    ]


def _burn_alerts(slo: SloSource, rule: RuleSpec) -> list[dict[str, object]]:
    """One alert per burn-rate pair: both windows burn faster than the pair's factor."""
    selector = _matchers({"slo": slo.name})
    budget = _budget(slo)
    out: list[dict[str, object]] = []
    for pair in BURN_RATES:
        def burn(window: str) -> str:
            return f"slo:sli_error:ratio_rate{window}{selector} / {budget}"

        def lookup(name: str, pair_short: str = pair.short, pair_long: str = pair.long,
                   factor: float = pair.factor) -> str | None:
            if name == "window":  # a label of the rule, not of the expression's result
                return pair_long
            if name == "short_burn_rate":
                return (f"{{{{ with query {_go_string(burn(pair_short))} }}}}"
                        '{{ . | first | value | printf "%.4g" }}{{ else }}unknown{{ end }}')
            if name == "error_budget_remaining":
                query = f"slo:period_error_budget_remaining:ratio{selector}"
                return (f"{{{{ with query {_go_string(query)} }}}}"
                        '{{ . | first | value | printf "%.4g" }}{{ else }}unknown{{ end }}')
            if name == "burn_threshold":
                return _number(factor)
            if name == "burn_rate":
                return '{{ $value | printf "%.4g" }}'
            return None

        entry: dict[str, object] = {
            "alert": rule.name,
            "expr": f"({burn(pair.long)}) > {_number(pair.factor)} and "
                    f"({burn(pair.short)}) > {_number(pair.factor)}",
            "labels": {"severity": pair.severity, "slo": slo.name, "window": pair.long},
            "annotations": {"summary": _summary(rule, "burn_rate", lookup),
                            "condition": _go_text(rule.condition.text), **_links(rule)}}
        out.append(entry)
    return out


def _comment(text: str) -> str:
    return " ".join(text.split())  # one line, whatever the text held


def prometheus_duration(seconds: float) -> str:
    """Seconds as a Prometheus duration in the largest unit that keeps it exact: `2m`."""
    ms = round(seconds * 1000)
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
