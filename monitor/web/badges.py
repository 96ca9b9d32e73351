"""SVG badges, as shields.io draws them: a grey label on the left, a coloured value on the right
(a target's state, or its uptime over a window). Text widths are estimated per character, so
no font metrics are needed; every string is XML-escaped.
"""

from __future__ import annotations

from html import escape

COLOURS = {"up": "#1a7f37", "down": "#cf222e", "pending": "#6e7781"}
CHAR = 7.0  # px per character of 11 px Verdana, near enough for short labels
PAD = 10


def _width(text: str) -> int:
    return int(len(text) * CHAR + PAD)


def badge(label: str, value: str, colour: str) -> str:
    """One badge: `label` on grey, `value` on `colour`."""
    left, right = _width(label), _width(value)
    total = left + right
    text = escape(f"{label}: {value}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" '
        f'aria-label="{text}"><title>{text}</title>'
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" '
        'font-size="11">'
        f'<text x="{left / 2}" y="14">{escape(label)}</text>'
        f'<text x="{left + right / 2}" y="14">{escape(value)}</text></g></svg>')


def state_badge(name: str, state: str) -> str:
    """`name | up` (green), `down` (red) or `pending` (grey)."""
    return badge(name, state, COLOURS.get(state, COLOURS["pending"]))


def uptime_badge(name: str, window: str, uptime: float | None) -> str:
    """`name 24h | 99.95%`, coloured by how close to 100 % it is; `-` with no probe yet."""
    if uptime is None:
        return badge(f"{name} {window}", "-", COLOURS["pending"])
    colour = ("#1a7f37" if uptime >= 0.999 else "#4c9a2a" if uptime >= 0.99
              else "#d4a72c" if uptime >= 0.95 else "#cf222e")
    return badge(f"{name} {window}", f"{uptime * 100:.2f}%", colour)
