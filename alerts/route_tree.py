"""The route tree: which receiver, `group_by` and timers an alert gets, from its labels.

Routes are matched depth-first on label matchers; a child inherits what it leaves unset.
As in Alertmanager, the first matching child takes an alert unless it has `continue` set,
which lets the next siblings match too: one alert can then reach several receivers.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from alerts.model import matches

# The shape of monitor/config/alertconfig.py's RouteConfig: alerts/ may not import monitor/,
# so it states what it reads. Durations are in seconds.


class RouteSpec(Protocol):
    @property
    def receiver(self) -> str: ...
    @property
    def match(self) -> Mapping[str, str]: ...
    @property
    def group_by(self) -> Sequence[str]: ...
    @property
    def group_wait(self) -> float: ...
    @property
    def group_interval(self) -> float: ...
    @property
    def repeat_interval(self) -> float: ...
    @property
    def routes(self) -> Sequence[RouteSpec]: ...
    @property
    def continue_(self) -> bool: ...


_INHERITED = ("group_by", "group_wait", "group_interval", "repeat_interval")


@dataclass(frozen=True)
class Route:
    """A route with inheritance applied: what an alert routed here gets."""

    id: str  # the path of matchers from the root: stable while the config keeps its shape
    receiver: str
    match: Mapping[str, str]
    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    repeat_interval: float
    routes: tuple[Route, ...] = ()
    continue_: bool = False  # matching here, the next siblings are still tried

    @classmethod
    def build(cls, spec: RouteSpec, parent: Route | None = None, rid: str = "root") -> Route:
        """Applies inheritance: a child's "" receiver, and a child's group_by or timing left
        at the config default, take the parent's value (the root keeps its own)."""
        own: dict[str, Any] = {n: getattr(spec, n) for n in _INHERITED}
        if parent is not None:
            for n in _INHERITED:
                if _is_default(spec, n):
                    own[n] = getattr(parent, n)
        route = cls(id=rid, receiver=spec.receiver or (parent.receiver if parent else ""),
                    match=dict(spec.match), continue_=bool(spec.continue_),
                    **{**own, "group_by": tuple(own["group_by"])})
        ids = [matcher_text(s.match) for s in spec.routes]
        children = tuple(
            cls.build(s, route, f"{rid}/{text}" + (f"#{i}" if ids.count(text) > 1 else ""))
            for i, (s, text) in enumerate(zip(spec.routes, ids, strict=True)))
        return dataclasses.replace(route, routes=children)

    def find(self, labels: Mapping[str, str]) -> Route:
        """The first route `find_all` gives."""
        return self.find_all(labels)[0]

    def find_all(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes that take an alert with `labels` (this one matching), as Alertmanager
        picks them: depth-first, a matching child's routes are taken and the search stops
        there unless that child has `continue`; with no child taking it, this route does."""
        found: list[Route] = []
        for child in self.routes:
            if not matches(child.match, labels):
                continue
            found += child.find_all(labels)
            if not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        return {n: labels[n] for n in self.group_by if n in labels}


def _is_default(spec: object, name: str) -> bool:
    """Whether `spec.name` still holds its dataclass default (read as "not set")."""
    if not dataclasses.is_dataclass(spec):
        return False
    for f in dataclasses.fields(spec):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return bool(getattr(spec, name) == f.default)
            if f.default_factory is not dataclasses.MISSING:
                return bool(getattr(spec, name) == f.default_factory())
    return False


def matcher_text(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())) + "}"
