"""The probe interface: what a probe is given, what it returns, and why it can fail."""

from __future__ import annotations

import enum
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

import aiohttp

Value = float | int | bool | str


class Reason(enum.StrEnum):
    """Why a probe failed: a small fixed set, so it can be a metric label."""

    TIMEOUT = "timeout"
    DNS = "dns"
    REFUSED = "refused"
    CONNECT = "connect"  # other network errors: unreachable, reset, closed early
    TLS = "tls"
    STATUS = "status"  # unexpected HTTP status
    BODY = "body"  # body_regex did not match
    JSON = "json"  # a JSON condition did not hold, or the body was not JSON
    PROTOCOL = "protocol"  # not HTTP, garbled framing
    RPC_ERROR = "rpc_error"  # the node answered with an error object
    RATE_LIMITED = "rate_limited"  # HTTP 429 or a rate-limit error object: a quota, not a fault
    TOO_LARGE = "too_large"  # the answer passed the client's size limit and was cut off
    MALFORMED = "malformed"  # the node's answer lacks fields or has the wrong types
    CHAIN_ID = "chain_id"
    SYNCING = "syncing"
    LAG = "lag"
    STALE = "stale"
    PEERS = "peers"
    STATE = "state"  # XRPL server_state not healthy, amendment blocked
    LOAD = "load"  # XRPL load_factor too high
    SLOW = "slow"  # an answer came, but later than the target allows (webhook canary)
    CONFIG = "config"  # the target cannot run: e.g. an env: variable is not set
    INTERNAL = "internal"  # a bug in the probe: it raised instead of returning a result


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe of one target. `values` holds the named probe values of CONTRACT.md."""

    success: bool
    duration: float
    started_at: datetime
    values: Mapping[str, Value] = field(default_factory=dict)
    reason: Reason | None = None
    detail: str = ""  # human text: why it failed, or "" on success
    phases: Mapping[str, float] = field(default_factory=dict)  # http: resolve, connect, ...
    warnings: tuple[str, ...] = ()

    def named_values(self) -> dict[str, Value]:
        """Every probe value by its CONTRACT.md name, including the three each probe has."""
        return {**self.values, "success": self.success, "duration_seconds": self.duration,
                "failure_reason": self.reason.value if self.reason else ""}

    def as_json(self) -> dict[str, object]:
        return {
            "success": self.success,
            "duration_seconds": round(self.duration, 6),
            "started_at": self.started_at.isoformat(),
            "failure_reason": self.reason.value if self.reason else None,
            "detail": self.detail,
            "values": dict(self.values),
            "phases": {k: round(v, 6) for k, v in self.phases.items()},
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ProbeResult:
        """The result `as_json()` gave (as another instance published it). ValueError,
        KeyError or TypeError when `data` is not such a dict."""
        reason = data.get("failure_reason")
        values = data.get("values") or {}
        phases = data.get("phases") or {}
        warnings = data.get("warnings") or []
        if not isinstance(values, dict) or not isinstance(phases, dict) \
                or not isinstance(warnings, list):
            raise TypeError("values, phases and warnings must be an object, an object and a "
                            "list")
        started = datetime.fromisoformat(str(data["started_at"]))
        if started.tzinfo is None:
            raise ValueError("started_at has no time zone")
        return cls(
            success=bool(data["success"]),
            duration=float(data["duration_seconds"]),  # type: ignore[arg-type]
            started_at=started.astimezone(UTC),
            values={str(k): v for k, v in values.items()
                    if isinstance(v, float | int | bool | str)},
            reason=Reason(str(reason)) if reason else None,
            detail=str(data.get("detail") or ""),
            phases={str(k): float(v) for k, v in phases.items()},
            warnings=tuple(str(w) for w in warnings),
        )


class Clock(Protocol):
    def now(self) -> datetime: ...
    def monotonic(self) -> float: ...


class SystemClock:
    """Wall time in UTC for timestamps, the monotonic clock for durations."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass(frozen=True)
class ProbeContext:
    """What probes share: one HTTP session for RPC calls, the clock, other targets' results."""

    session: aiohttp.ClientSession
    clock: Clock = field(default_factory=SystemClock)
    # the last successful result of another target, by name (for `reference` lookups)
    last_result: Callable[[str], ProbeResult | None] = lambda _name: None
    # TLS client contexts by (verify, ca_file): each loads the CA bundle, which costs
    # milliseconds and memory, so thousands of https targets share a handful
    tls_contexts: dict[tuple[bool, str], ssl.SSLContext] = field(default_factory=dict)
    # [cluster] only: where this instance probes from; HTTP probes name it in their
    # User-Agent ("": no cluster)
    location: str = ""


class Probe(Protocol):
    """A configured check of one target. `run` never raises for a sick target."""

    async def run(self) -> ProbeResult: ...


class Outcome:
    """Collects a probe's values, then freezes them into a `ProbeResult`.

    The first failure recorded wins: it is the most specific reason the probe saw.
    """

    __slots__ = (
        "_clock",
        "_started",
        "_t0",
        "detail",
        "phases",
        "reason",
        "values",
        "warnings",
    )

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._started = clock.now()
        self._t0 = clock.monotonic()
        self.values: dict[str, Value] = {}
        self.phases: dict[str, float] = {}
        self.warnings: list[str] = []
        self.reason: Reason | None = None
        self.detail = ""

    def elapsed(self) -> float:
        return self._clock.monotonic() - self._t0

    def fail(self, reason: Reason, detail: str) -> None:
        if self.reason is None:
            self.reason, self.detail = reason, detail

    @property
    def failed(self) -> bool:
        return self.reason is not None

    def result(self) -> ProbeResult:
        return ProbeResult(
            success=self.reason is None,
            duration=self.elapsed(),
            started_at=self._started,
            values=self.values,
            reason=self.reason,
            detail=self.detail,
            phases=self.phases,
            warnings=tuple(self.warnings),
        )


# --- options ------------------------------------------------------------------------------
# Each probe module defines a frozen dataclass of its options. The config loader (monitor/)
# decodes TOML into it generically, reading these field markers; the class checks its own
# invariants in __post_init__ and raises OptionError naming the field.

DURATION = "duration"  # metadata key: a float of seconds, written "15s" in config
SECRET = "secret"  # noqa: S105 - metadata key: may be "env:NAME", resolved when the probe is built


def duration(default: float) -> float:
    return field(default=default, metadata={DURATION: True})


def secret(default: str = "") -> str:
    return field(default=default, metadata={SECRET: True})


class OptionError(ValueError):
    """An option value is invalid; `key` names the option, `value` is what was given."""

    def __init__(self, key: str, message: str, value: object) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message, self.value = key, message, value


def is_env_ref(value: object) -> bool:
    return isinstance(value, str) and value.startswith("env:")
