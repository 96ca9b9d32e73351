"""Summary templates: `{target} is {block_lag} blocks behind`. A placeholder names a probe value
or a label; `{{` and `}}` are literal braces. `render` never fails on user text (an absent name
shows as `?`, a brace that forms no placeholder stays as written); `check` is the strict
reading the config loader applies once.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from typing import Literal

_PIECE = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*)\}")

Piece = tuple[Literal["text", "name"], str]


def pieces(template: str) -> list[Piece]:
    """The template as literal text and placeholder names, in order (adjacent text merged)."""
    out: list[Piece] = []
    text: list[str] = []
    pos = 0
    for m in _PIECE.finditer(template):
        text.append(template[pos:m.start()])
        if m.group(1) is None:
            text.append(m.group()[0])  # `{{` or `}}`: one literal brace
        else:
            if any(text):
                out.append(("text", "".join(text)))
            text = []
            out.append(("name", m.group(1)))
        pos = m.end()
    text.append(template[pos:])
    if any(text):
        out.append(("text", "".join(text)))
    return out


def render(template: str, values: Mapping[str, object]) -> str:
    """Fills the placeholders from `values` (probe values and labels)."""
    return "".join(format_value(values.get(s)) if kind == "name" else s
                   for kind, s in pieces(template))


def format_value(value: object) -> str:
    """A value as a person reads it: `true`, `12`, `0.25`, `3.142`; absent (None) as `?`."""
    if value is None:
        return "?"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = f"{value:.3f}".rstrip("0").rstrip(".")
        return "0" if text == "-0" else text
    return str(value)


def check(template: str, allowed: Collection[str] | None = None) -> list[str]:
    """Problems with a template, each naming its position: braces that form no placeholder
    and, when `allowed` is given, placeholder names not in it."""
    problems: list[str] = []
    pos = 0
    for m in [*_PIECE.finditer(template), None]:
        end = m.start() if m else len(template)
        for i in range(pos, end):
            if template[i] in "{}":
                double = template[i] * 2
                problems.append(f"stray {template[i]!r} at position {i} (placeholders look like "
                                f"{{name}}; write {double} for a literal {template[i]})")
        if m is None:
            break
        name = m.group(1)
        if name is not None and allowed is not None and name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"unknown name {name!r} at position {m.start()}{hint}")
        pos = m.end()
    return problems
