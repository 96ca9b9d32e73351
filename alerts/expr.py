"""Rule conditions: `block_lag > 5 and not syncing`, parsed once at config load into a frozen
tree (no eval) and evaluated per probe result with three-valued logic, so a value the target
did not report makes a comparison unknown (None) rather than false.
"""

from __future__ import annotations

import difflib
import functools
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from alerts import ConditionError
from probes.base import Value

Kind = Literal["number", "bool", "string"]

# The probe values of CONTRACT.md, plus the synthetic `service` target's values that the
# monitor feeds from the webhook service's queue statistics, and the `follower` targets'
# (`deep_reorgs_1h`). The kind is checked at parse time, so `failure_reason > 3` is refused
# when the config loads, not at 3 a.m.
VALUE_KINDS: Mapping[str, Kind] = {
    "success": "bool", "duration_seconds": "number", "failure_reason": "string",
    "status_code": "number", "cert_expiry_days": "number", "body_bytes": "number",
    "connect_seconds": "number", "head_block": "number", "block_lag": "number",
    "head_age_seconds": "number", "peers": "number", "syncing": "bool", "chain_id": "number",
    "lib_lag": "number", "server_state": "string", "load_factor": "number",
    "delivery_seconds": "number", "delivery_failure_ratio": "number",
    "oldest_pending_age_seconds": "number", "queue_depth": "number",
    "deep_reorgs_1h": "number", "burn_rate": "number", "short_burn_rate": "number",
    "burn_threshold": "number", "error_budget_remaining": "number",
}
# Far past any condition a person writes, far below Python's recursion limit (the parser
# recurses about four frames per level).
MAX_DEPTH = 50
KEYWORDS = ("and", "or", "not", "true", "false")
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<paren>[()])
""", re.VERBOSE)
_OPERATORS: Mapping[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}
_HINTS = {"&": " (write `and`)", "|": " (write `or`)", "!": " (write `not`)",
          "=": " (write `==` to compare)"}


@dataclass(frozen=True, slots=True)
class Operand:
    """A value name (`name` set) or a literal (`literal` set); `position` is its offset."""

    position: int
    name: str = ""
    literal: Value | None = None

    @property
    def kind(self) -> Kind:
        if self.name:
            return VALUE_KINDS[self.name]
        if isinstance(self.literal, bool):
            return "bool"
        return "string" if isinstance(self.literal, str) else "number"

    def value(self, values: Mapping[str, Value]) -> Value | None:
        return values.get(self.name) if self.name else self.literal


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # a key of _OPERATORS
    left: Operand
    right: Operand

    def evaluate(self, values: Mapping[str, Value]) -> bool | None:
        return compare(self.left.value(values), self.op, self.right.value(values))


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node

    def evaluate(self, values: Mapping[str, Value]) -> bool | None:
        result = self.operand.evaluate(values)
        return None if result is None else not result


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Node, ...]

    def evaluate(self, values: Mapping[str, Value]) -> bool | None:
        results = [o.evaluate(values) for o in self.operands]
        if False in results:
            return False
        return None if None in results else True


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]

    def evaluate(self, values: Mapping[str, Value]) -> bool | None:
        results = [o.evaluate(values) for o in self.operands]
        if True in results:
            return True
        return None if None in results else False


Node = Compare | Not | And | Or  # a bare `syncing` is parsed as `syncing == true`


def compare(left: Value | None, op: str, right: Value | None) -> bool | None:
    """`left op right`; None when a side is absent or the kinds do not compare."""
    if left is None or right is None:
        return None
    if isinstance(left, bool) or isinstance(right, bool):
        if not (isinstance(left, bool) and isinstance(right, bool)) or op not in ("==", "!="):
            return None
        return (left == right) == (op == "==")
    if isinstance(left, str) or isinstance(right, str):
        if not (isinstance(left, str) and isinstance(right, str)) or op not in ("==", "!="):
            return None
        return (left == right) == (op == "==")
    return bool(_OPERATORS[op](float(left), float(right)))


@dataclass(frozen=True)
class Condition:
    text: str
    root: Node
    names: tuple[str, ...]  # the value names used, in order of first use

    def evaluate(self, values: Mapping[str, Value]) -> bool | None:
        """True or False, or None when a value it needs is absent (unknown)."""
        return self.root.evaluate(values)


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Condition:
    """Parses a condition; ConditionError points at the offending character."""
    tokens = _tokenize(text)
    parser = _Parser(text, tokens)
    root = parser.disjunction()
    kind, word, at = parser.peek()
    if kind == ")":
        raise ConditionError("unbalanced ')': nothing to close", text, at)
    if kind != "end":
        raise ConditionError(f"unexpected {word!r}, expected `and`, `or` or the end", text, at)
    return Condition(text, root, tuple(dict.fromkeys(parser.names)))


Token = tuple[str, str, int]  # kind (number, string, name, op, (, ), end), text, position


def _tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos] in "\"'":
            value, end = _string(text, pos)
            tokens.append(("string", value, pos))
            pos = end
            continue
        m = _TOKEN.match(text, pos)
        if m is None:
            char = text[pos]
            raise ConditionError(f"unknown character {char!r}{_HINTS.get(char, '')}", text, pos)
        kind = m.lastgroup or ""
        if kind == "number" and m.end() < len(text) and (text[m.end()].isalnum()
                                                         or text[m.end()] in "_."):
            raise ConditionError("malformed number", text, pos)
        if kind == "name" and m.group().lower() in KEYWORDS:
            tokens.append((m.group().lower(), m.group(), pos))
        elif kind != "space":
            tokens.append((m.group() if kind == "paren" else kind, m.group(), pos))
        pos = m.end()
    tokens.append(("end", "", len(text)))
    return tokens


def _string(text: str, start: int) -> tuple[str, int]:
    """The string literal opening at `start` and the offset after it. A backslash makes the
    next character literal: "say \\"hi\\""."""
    pos = start + 1
    while pos < len(text) and text[pos] != text[start]:
        pos += 2 if text[pos] == "\\" else 1
    if pos >= len(text):
        raise ConditionError("unterminated string", text, start)
    return re.sub(r"\\(.)", r"\1", text[start + 1:pos], flags=re.DOTALL), pos + 1


class _Parser:
    """Recursive descent, lowest precedence first: or, and, not, comparison."""

    def __init__(self, text: str, tokens: list[Token]) -> None:
        self.text, self.tokens, self.index = text, tokens, 0
        self.names: list[str] = []
        self.depth = 0  # open parentheses and `not`s around the current token

    def peek(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def disjunction(self) -> Node:
        operands = [self.conjunction()]
        while self.peek()[0] == "or":
            self.take()
            operands.append(self.conjunction())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def conjunction(self) -> Node:
        operands = [self.negation()]
        while self.peek()[0] == "and":
            self.take()
            operands.append(self.negation())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def negation(self) -> Node:
        kind, _, at = self.peek()
        if kind in ("not", "("):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise ConditionError(f"nested too deeply (more than {MAX_DEPTH} levels of "
                                     "parentheses and `not`)", self.text, at)
            try:
                return self._nested()
            finally:
                self.depth -= 1
        return self.comparison()

    def _nested(self) -> Node:
        if self.peek()[0] == "not":
            self.take()
            return Not(self.negation())
        if self.peek()[0] == "(":
            _, _, opened = self.take()
            inner = self.disjunction()
            kind, word, at = self.take()
            if kind == "end":
                raise ConditionError("unbalanced '(': never closed", self.text, opened)
            if kind != ")":
                raise ConditionError(f"unexpected {word!r}, expected ')'", self.text, at)
            return inner
        raise AssertionError("negation() calls this only before `not` or `(`")

    def comparison(self) -> Node:
        left = self.operand()
        if self.peek()[0] != "op":
            if left.kind != "bool":
                example = {"number": " > 0", "string": ' == "..."'}[left.kind]
                raise ConditionError(f"{_show(left)} is a {left.kind}, not true/false; compare "
                                     f"it, e.g. `{_show(left)}{example}`", self.text,
                                     left.position)
            return Compare("==", left, Operand(left.position, literal=True))
        op = self.take()[1]
        right = self.operand()
        if op in ("==", "!=") and left.kind != right.kind:
            raise ConditionError(f"cannot compare a {left.kind} with a {right.kind}",
                                 self.text, right.position)
        for side in (left, right):
            if op not in ("==", "!=") and side.kind != "number":
                raise ConditionError(f"{op} needs numbers, but {_show(side)} is a {side.kind}",
                                     self.text, side.position)
        return Compare(op, left, right)

    def operand(self) -> Operand:
        kind, word, at = self.take()
        if kind == "number":
            return Operand(at, literal=float(word) if any(c in word for c in ".eE") else int(word))
        if kind == "string":
            return Operand(at, literal=word)
        if kind in ("true", "false"):
            return Operand(at, literal=kind == "true")
        if kind == "name":
            if word not in VALUE_KINDS:
                raise ConditionError(_unknown(word), self.text, at)
            self.names.append(word)
            return Operand(at, name=word)
        found = "the end" if kind == "end" else repr(word)
        raise ConditionError(f"missing operand: expected a value name, number, string, true or "
                             f"false, found {found}", self.text, at)


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, VALUE_KINDS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown value name {name!r}{hint} (known: {', '.join(sorted(VALUE_KINDS))})"


def _show(operand: Operand) -> str:
    return operand.name or repr(operand.literal)
