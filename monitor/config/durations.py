"""Durations as written in config.toml ("500ms", "15s", "2m", "1h", "5d", "1h30m")."""

from __future__ import annotations

import re

# The longest duration any key takes: ten years keeps every `now + duration` inside datetime's
# range and every timedelta finite, and no interval, retry or window needs more.
MAX_SECONDS = 3650 * 86400.0
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(text: str) -> float:
    """Seconds in `text`; ValueError when it is not a duration."""
    if not _WHOLE.fullmatch(text):
        raise ValueError(text)
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest config spelling of `seconds` (for messages and exports)."""
    if seconds and seconds < 1:
        return f"{round(seconds * 1000)}ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
