"""The `[[targets]]` list: common keys, per-type options, and the checks across targets."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from monitor.config.decode import Decoder, join
from monitor.config.durations import format_duration
from probes.base import DURATION, SECRET, is_env_ref
from probes.registry import TYPES

COMMON = frozenset({"name", "type", "url", "interval", "timeout", "labels", "locations"})
# Label names our metrics already use, or that Prometheus sets on scrape.
RESERVED_LABELS = frozenset({"target", "type", "phase", "reason", "result", "le", "quantile",
                             "job", "instance", "version", "outcome", "alertname",
                             "severity"})
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# What a node provider's API key in a URL path looks like: Infura's 32 hex digits
# (/v3/<key>), Alchemy's 32 letters, digits, _ and - (/v2/<key>), QuickNode's 40-hex token.
# Words (/healthz, /eth-mainnet-archive) have no digits, versions (/v3) are short.
_HEX_KEY = re.compile(r"[0-9A-Fa-f]{32,}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,}")
HIDDEN = "…"  # what display_url shows in place of a path segment that looks like a key


@dataclass(frozen=True)
class TargetConfig:
    name: str
    type: str
    url: str  # may be "env:NAME": resolve before use, never log the resolved form
    interval: float
    timeout: float
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Any = None  # the type's options dataclass
    locations: tuple[str, ...] = ()  # [cluster] only: where it is probed from (empty: all)

    @property
    def chain(self) -> str:
        """The `chain` label of the chain gauges: labels.chain, else the probe type."""
        return self.labels.get("chain", self.type)

    @property
    def display_url(self) -> str:
        """The URL safe to show: env references as written, credentials and query removed,
        and each path segment that looks like an API key (`key_like`) replaced by `HIDDEN`.
        Every place that shows a target's URL (messages, API, status page) shows this."""
        if is_env_ref(self.url):
            return self.url
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        path = "/".join(HIDDEN if key_like(seg) else seg for seg in parts.path.split("/"))
        return f"{parts.scheme}://{host}{path}"


def key_like(segment: str) -> bool:
    """Whether a URL path segment looks like a credential: 32 or more hex digits, or 16 or
    more of [A-Za-z0-9_-] with both letters and digits among them."""
    if _HEX_KEY.fullmatch(segment):
        return True
    return (_TOKEN.fullmatch(segment) is not None and any(c.isdigit() for c in segment)
            and any(c.isalpha() for c in segment))


def decode_targets(d: Decoder, raw: object, default_interval: float,
                   default_timeout: float) -> tuple[TargetConfig, ...]:
    if not isinstance(raw, list):
        d.error("targets", "must be a list of [[targets]] tables", raw)
        return ()
    out: list[TargetConfig] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        path = f"targets[{i}]"
        target = _decode_one(d, item, path, default_interval, default_timeout)
        if target is None:
            continue
        if target.name in seen:
            d.error(join(path, "name"), f"is already used by targets[{seen[target.name]}]",
                    target.name)
            continue
        seen[target.name] = i
        out.append(target)
    _check_references(d, out, seen)
    return tuple(out)


def _decode_one(d: Decoder, item: object, path: str, default_interval: float,
                default_timeout: float) -> TargetConfig | None:
    if not isinstance(item, Mapping):
        d.error(path, "must be a table", item)
        return None
    before = len(d.issues)
    for key in ("name", "type", "url"):
        if key not in item:
            d.error(join(path, key), "is required")
    kind = item.get("type")
    ptype = TYPES.get(kind) if isinstance(kind, str) else None
    if "type" in item and ptype is None:
        d.error(join(path, "type"), "must be one of " + ", ".join(TYPES), kind)
    name = item.get("name")
    if "name" in item and (not isinstance(name, str) or not name.strip()
                           or any(ord(c) < 32 for c in name)):
        d.error(join(path, "name"), "must be a non-empty string without control characters",
                name)
    url = item.get("url")
    if "url" in item:
        url = d.value(str, url, join(path, "url"), {SECRET: True})
    interval = _duration(d, item, path, "interval", default_interval)
    timeout = _duration(d, item, path, "timeout", min(default_timeout, interval or 1.0))
    if interval is not None and interval <= 0:
        d.error(join(path, "interval"), "must be more than 0s", item["interval"])
    if timeout is not None and timeout <= 0:
        d.error(join(path, "timeout"), "must be more than 0s", item["timeout"])
    elif timeout and interval and timeout > interval:
        d.error(join(path, "timeout"),
                f"must not exceed interval ({format_duration(interval)})", item["timeout"])
    labels = _labels(d, item.get("labels", {}), join(path, "labels"))
    locations = _locations(d, item.get("locations", []), join(path, "locations"))
    if ptype is None:
        return None
    if isinstance(url, str) and not is_env_ref(url):
        _check_url(d, url, ptype.schemes, join(path, "url"))
    options: Any = d.table(ptype.options, item, path, exclude=COMMON)
    if len(d.issues) > before or options is None:
        return None
    assert isinstance(name, str) and isinstance(url, str)  # checked above
    assert interval is not None and timeout is not None
    return TargetConfig(name, ptype.name, url, interval, timeout, labels, options,
                        locations)


def _duration(d: Decoder, item: Mapping[str, Any], path: str, key: str,
              default: float) -> float | None:
    if key not in item:
        return default
    before = len(d.issues)
    value = d.value(float, item[key], join(path, key), {DURATION: True})
    return None if len(d.issues) > before else float(value)


def _labels(d: Decoder, raw: object, path: str) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        d.error(path, "must be a table like { team = \"nodes\" }", raw)
        return {}
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not _LABEL.fullmatch(key) or key.startswith("__"):
            d.error(join(path, key), "is not a valid Prometheus label name")
        elif key in RESERVED_LABELS:
            d.error(join(path, key), "is reserved (used by our metrics or by Prometheus)")
        elif not isinstance(value, str):
            d.error(join(path, key), "must be a string", value)
        else:
            out[key] = value
    return out


def _locations(d: Decoder, raw: object, path: str) -> tuple[str, ...]:
    if not isinstance(raw, list):
        d.error(path, 'must be a list of location names like ["eu", "us"]', raw)
        return ()
    out: list[str] = []
    for i, value in enumerate(raw):
        if not is_location(value):
            d.error(join(path, i), "must be a non-empty location name without control "
                    "characters", value)
        elif value in out:
            d.error(join(path, i), "is listed twice", value)
        else:
            out.append(value)
    return tuple(out)


def is_location(value: object) -> bool:
    """A usable location name: a non-empty string, no control characters (it becomes the
    `location` label)."""
    return isinstance(value, str) and bool(value.strip()) and \
        not any(ord(c) < 32 for c in value)


def _check_url(d: Decoder, url: str, schemes: tuple[str, ...], path: str) -> None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        d.error(path, "is not a valid URL", url)
        return
    if parts.scheme not in schemes or not parts.hostname:
        shown = " or ".join(f"{s}://" for s in schemes)
        d.error(path, f"must be a {shown} URL with a host", url)
    elif parts.scheme == "tcp" and port is None:
        d.error(path, "must name a port, like tcp://host:5432", url)


def _check_references(d: Decoder, targets: list[TargetConfig], index: dict[str, int]) -> None:
    for t in targets:
        ref = getattr(t.options, "reference", "")
        if not ref or is_env_ref(ref):
            continue
        path = f"targets[{index[t.name]}].reference"
        if ref.startswith(("http://", "https://")):
            continue
        other = next((o for o in targets if o.name == ref), None)
        if other is None:
            d.error(path, "must name another target or be an http(s) URL", ref)
        elif other.name == t.name:
            d.error(path, "must not name the target itself", ref)
        elif other.type != t.type:
            d.error(path, f"names a {other.type} target; it must be {t.type}", ref)
