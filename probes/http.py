"""The `http` probe: one request on a fresh connection, judged by status, body regex, JSON
conditions and certificate expiry. The request bytes and TLS context are built once per
target; each run is a `probes.httpwire.fetch` per hop under one deadline.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from probes.base import (
    SECRET,
    OptionError,
    Outcome,
    ProbeContext,
    ProbeResult,
    Reason,
    duration,
    is_env_ref,
)
from probes.conditions import Condition, parse_condition
from probes.httpmessage import user_agent
from probes.httpwire import (
    DEFAULT_MAX_BODY,
    Request,
    Response,
    Trace,
    Url,
    WireError,
    cert_not_after,
    fetch,
    timeout_detail,
    tls_context,
)

_DAY = 86400.0
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_MANAGED = frozenset({"connection", "content-length", "transfer-encoding"})  # ours to set
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ANY_2XX = frozenset(range(200, 300))  # shared: one per probe would be ~9 KB per target


@dataclass(frozen=True)
class HttpOptions:
    method: str = "GET"
    # values may be "env:NAME": the loader resolves them (SECRET) before building the probe
    headers: Mapping[str, str] = field(default_factory=dict, metadata={SECRET: True})
    body: str = ""
    expect_status: tuple[int, ...] = ()  # empty: any 2xx
    body_regex: str = ""
    json: tuple[str, ...] = ()  # conditions, see probes.conditions
    follow_redirects: bool = False
    max_redirects: int = 10
    cert_expiry_warn: float = duration(14 * _DAY)
    tls_verify: bool = True
    tls_ca_file: str = ""  # replaces the system CAs when set
    max_body_bytes: int = DEFAULT_MAX_BODY  # stored for body_regex/json; all bytes are read
    # derived once from the above; not config keys
    pattern: re.Pattern[str] | None = field(init=False, default=None, repr=False, compare=False)
    conditions: tuple[Condition, ...] = field(init=False, default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _TOKEN.fullmatch(self.method):
            raise OptionError("method", 'must be an HTTP method such as "GET"', self.method)
        # key "headers" (the SECRET field) so the loader never echoes a header's value
        for name, value in self.headers.items():
            if not _TOKEN.fullmatch(name) or name.lower() in _MANAGED:
                raise OptionError("headers", f"{name!r} is not a header the probe may set",
                                  name)
            if is_env_ref(value):
                continue  # resolved before the probe is built
            if not isinstance(value, str) or not value.isprintable() or not _latin1(value):
                raise OptionError("headers", f"{name!r} must be printable Latin-1 text", value)
        for code in self.expect_status:
            if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
                raise OptionError("expect_status", "must list HTTP status codes (100-599)", code)
        if self.body_regex:
            try:
                object.__setattr__(self, "pattern", re.compile(self.body_regex))
            except re.error as exc:
                raise OptionError("body_regex", f"not a regular expression: {exc}",
                                  self.body_regex) from exc
        conditions = tuple(parse_condition(c, f"json[{i}]") for i, c in enumerate(self.json))
        object.__setattr__(self, "conditions", conditions)
        for key in ("max_redirects", "max_body_bytes"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise OptionError(key, "must be a whole number, 0 or more", value)
        if self.cert_expiry_warn < 0:
            raise OptionError("cert_expiry_warn", "must not be negative", self.cert_expiry_warn)
        if self.tls_ca_file and not os.path.isfile(self.tls_ca_file):
            raise OptionError("tls_ca_file", "no such file", self.tls_ca_file)


def _latin1(text: str) -> bool:
    return all(ord(c) < 256 for c in text)


class HttpProbe:
    def __init__(self, url: str, timeout: float, options: HttpOptions,
                 ctx: ProbeContext) -> None:
        try:
            target = Url(url)
        except ValueError as exc:
            raise OptionError("url", str(exc), url) from exc
        if timeout <= 0:
            raise OptionError("timeout", "must be more than 0s", timeout)
        self._timeout, self._opts, self._ctx = timeout, options, ctx
        try:
            self._request = Request(target, options.method, options.headers.items(),
                                    options.body.encode(), user_agent(ctx.location))
        except ValueError as exc:  # names only: the values may be resolved secrets
            raise OptionError("headers", str(exc), list(options.headers)) from exc
        self._expect = frozenset(options.expect_status) or _ANY_2XX
        self._tls: ssl.SSLContext | None = None
        self._cert: tuple[bytes, datetime] | None = None  # the last leaf seen, parsed
        if target.scheme == "https" or options.tls_ca_file:
            self._tls_context()  # a bad CA file is a config error, reported at load

    async def run(self) -> ProbeResult:
        out = Outcome(self._ctx.clock)
        trace = Trace(self._ctx.clock.monotonic, out.phases)
        response = None
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._exchange(trace, out)
        except TimeoutError:
            phase = trace.phase
            trace.end()
            out.fail(Reason.TIMEOUT, timeout_detail(self._timeout, phase))
        except WireError as exc:
            trace.end()
            out.fail(exc.reason, str(exc))
        if response is not None:
            self._judge(response, out)
        return out.result()

    async def _exchange(self, trace: Trace, out: Outcome) -> Response:
        request, opts, hops = self._request, self._opts, 0
        while True:
            tls = self._tls_context() if request.url.scheme == "https" else None
            response = await fetch(request, trace, tls, opts.max_body_bytes)
            location = response.header("location")
            if not opts.follow_redirects or response.status not in _REDIRECTS or not location:
                return response
            if hops == opts.max_redirects:
                out.fail(Reason.STATUS, f"more than {hops} redirects, the last to {location!r}")
                return response
            try:
                request = request.redirect(location, response.status)
            except ValueError as exc:
                out.fail(Reason.PROTOCOL, f"cannot follow redirect to {location!r}: {exc}")
                return response
            hops += 1

    def _judge(self, response: Response, out: Outcome) -> None:
        opts, values = self._opts, out.values
        values["status_code"] = response.status
        values["body_bytes"] = response.body_bytes
        if response.peer_cert is not None:
            self._check_cert(response.peer_cert, out)
        if response.status not in self._expect:
            wanted = ", ".join(map(str, opts.expect_status)) or "2xx"
            out.fail(Reason.STATUS, f"status {response.status}, expected {wanted}")
        if opts.pattern is not None:
            text = response.body.decode("utf-8", "replace")
            if not opts.pattern.search(text):
                out.fail(Reason.BODY, f"body does not match /{opts.body_regex}/"
                                      f"{_truncated(response)}")
        if opts.conditions:
            self._check_json(response, out)

    def _check_cert(self, der: bytes, out: Outcome) -> None:
        if self._cert is None or self._cert[0] != der:  # parse a renewed certificate once
            self._cert = (der, cert_not_after(der))
        not_after = self._cert[1]
        days = (not_after - self._ctx.clock.now()).total_seconds() / _DAY
        out.values["cert_expiry_days"] = days
        when = f"{not_after:%Y-%m-%d %H:%M} UTC"
        if days < 0:
            out.fail(Reason.TLS, f"certificate expired {-days:.1f} days ago ({when})")
        elif days * _DAY < self._opts.cert_expiry_warn:
            out.warnings.append(f"certificate expires in {days:.1f} days ({when})")

    def _check_json(self, response: Response, out: Outcome) -> None:
        try:
            doc = jsonlib.loads(response.body)
        except (ValueError, RecursionError) as exc:
            out.fail(Reason.JSON, f"body is not JSON: {exc}{_truncated(response)}")
            return
        for condition in self._opts.conditions:
            ok, explanation = condition.evaluate(doc)
            if not ok:
                out.fail(Reason.JSON, explanation)
                return

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            opts = self._opts
            key = (opts.tls_verify, opts.tls_ca_file)
            shared = self._ctx.tls_contexts.get(key)
            if shared is None:
                try:
                    shared = self._ctx.tls_contexts[key] = tls_context(*key)
                except (OSError, ssl.SSLError) as exc:
                    raise OptionError("tls_ca_file", f"cannot load: {exc}",
                                      opts.tls_ca_file) from exc
            self._tls = shared
        return self._tls


def _truncated(response: Response) -> str:
    return f" (only the first {len(response.body)} bytes kept)" if response.truncated else ""
