"""Silences: label matchers that mute alerts for a while, as the bot's `/silence` creates them.

Pure values plus a small collection; the caller persists it with `to_json()`/`from_json()`
and passes the clock in. Bad input (an unknown duration, an empty matcher set) raises
`SilenceError`, which is both an `AlertError` and a `ValueError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from alerts import AlertError


class SilenceError(AlertError, ValueError):
    pass


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# A silence lasts at most this long: far enough for "forever", near enough that its end stays
# inside datetime's range (year 9999) from any start the API accepts.
MAX_DURATION = timedelta(days=100 * 365)
_WHOLE = re.compile(r"(?:\d+[smhdw])+")
_PART = re.compile(r"(\d+)([smhdw])")


def parse_duration(text: str) -> timedelta:
    """"90s", "30m", "1h30m", "2d", "1w" as a timedelta; SilenceError when not one, zero, or
    longer than `MAX_DURATION`.

    A copy of the idea in monitor/config/durations.py kept small on purpose: alerts/ must not
    import monitor/, and a silence never needs fractions or milliseconds.
    """
    if len(text) > 64:  # no int() of thousands of digits
        raise SilenceError(f'not a duration like "30m", "2h" or "1d": {text[:64]!r}...')
    text = text.strip().lower()
    if not _WHOLE.fullmatch(text):
        raise SilenceError(f'not a duration like "30m", "2h" or "1d": {text!r}')
    seconds = sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    if seconds <= 0:
        raise SilenceError(f"a silence must last more than 0s: {text!r}")
    if seconds > MAX_DURATION.total_seconds():
        raise SilenceError(f"a silence lasts at most {MAX_DURATION.days}d: {text!r}")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class Silence:
    """Mutes alerts whose labels equal every matcher, from `starts_at` until `ends_at`."""

    id: str
    matchers: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    comment: str = ""
    created_by: str = ""

    def __post_init__(self) -> None:
        if not self.matchers:
            raise SilenceError("a silence needs at least one matcher")
        if self.starts_at.tzinfo is None or self.ends_at.tzinfo is None:
            raise SilenceError("silence times must be timezone-aware")
        if self.ends_at < self.starts_at:
            raise SilenceError("a silence cannot end before it starts")
        object.__setattr__(self, "matchers", dict(self.matchers))

    def is_active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.matchers.items())

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "matchers": dict(self.matchers),
                "starts_at": self.starts_at.isoformat(), "ends_at": self.ends_at.isoformat(),
                "comment": self.comment, "created_by": self.created_by}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Silence:
        return cls(id=str(data["id"]), matchers={str(k): str(v) for k, v in
                                                 data["matchers"].items()},
                   starts_at=datetime.fromisoformat(data["starts_at"]),
                   ends_at=datetime.fromisoformat(data["ends_at"]),
                   comment=str(data.get("comment", "")),
                   created_by=str(data.get("created_by", "")))


class Silences:
    """All silences by id, expired ones included until `prune()` drops them."""

    def __init__(self, silences: Iterable[Silence] = ()) -> None:
        self._by_id: dict[str, Silence] = {}
        for s in silences:
            self.add(s)

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, silence_id: str) -> Silence | None:
        return self._by_id.get(silence_id)

    def add(self, silence: Silence) -> None:
        """Adds `silence`; one with the same id is replaced (a retried command is harmless)."""
        self._by_id[silence.id] = silence

    def expire(self, silence_id: str, now: datetime) -> Silence | None:
        """Ends the silence at `now` (a future one never starts); None for an unknown id."""
        silence = self._by_id.get(silence_id)
        if silence is None:
            return None
        if silence.ends_at > now:
            silence = replace(silence, ends_at=max(now, silence.starts_at))
            self._by_id[silence_id] = silence
        return silence

    def active(self, now: datetime) -> list[Silence]:
        """Silences in force at `now`, the one ending first first."""
        return sorted((s for s in self._by_id.values() if s.is_active(now)),
                      key=lambda s: (s.ends_at, s.id))

    def match(self, labels: Mapping[str, str], now: datetime) -> Silence | None:
        """The active silence muting `labels` (the one lasting longest), or None."""
        hits = [s for s in self.active(now) if s.matches(labels)]
        return hits[-1] if hits else None

    def prune(self, now: datetime) -> None:
        """Forgets silences that have ended."""
        self._by_id = {i: s for i, s in self._by_id.items() if s.ends_at > now}

    def to_json(self) -> str:
        return json.dumps([s.to_dict() for s in sorted(self._by_id.values(),
                                                        key=lambda s: s.id)])

    @classmethod
    def from_json(cls, text: str) -> Silences:
        try:
            items = json.loads(text)
            if not isinstance(items, list):
                raise TypeError(f"expected a list, got {type(items).__name__}")
            return cls(Silence.from_dict(item) for item in items)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SilenceError(f"stored silences do not parse: {exc}") from exc


def silence_id(matchers: Mapping[str, str], who: str, now: datetime) -> str:
    """A short id, the same for the same command at the same moment."""
    text = json.dumps([sorted(matchers.items()), who, now.isoformat()])
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def silence_for(name: str, known_targets: Iterable[str], known_alertnames: Iterable[str],
                duration: str | timedelta, reason: str, who: str, now: datetime) -> Silence:
    """The silence `/silence <name> <duration> [reason]` asks for.

    A known target name silences every alert of that target (`target=name`, and wins when
    the name is both); a known alert name silences that alert everywhere (`alertname=name`).
    `known_alertnames` should list every rule that can fire, not only those firing now, so
    an alert can be silenced ahead of time. Any other name raises SilenceError: a typo must
    not create a silence that mutes nothing.
    """
    name = name.strip()
    length = parse_duration(duration) if isinstance(duration, str) else duration
    if length <= timedelta(0):
        raise SilenceError("a silence must last more than 0s")
    if length > MAX_DURATION:
        raise SilenceError(f"a silence lasts at most {MAX_DURATION.days}d")
    if name in set(known_targets):
        matchers = {"target": name}
    elif name in set(known_alertnames):
        matchers = {"alertname": name}
    else:
        raise SilenceError(f"no target or alert is called {name!r}")
    return Silence(id=silence_id(matchers, who, now), matchers=matchers, starts_at=now,
                   ends_at=now + length, comment=reason, created_by=who)
