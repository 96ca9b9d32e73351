"""What a failed Google Cloud Monitoring call means for the exporter (`exporter`): its kind
(gRPC status name or exception class), whether a retry may help, and the operator's log
line, written once per kind until a cycle where every call succeeds.
"""

from __future__ import annotations

import logging

import grpc
from google.api_core import exceptions as api_exceptions

log = logging.getLogger("crypitor.gcp")

TRANSIENT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})
_NEEDS_OPERATOR = frozenset({"INVALID_ARGUMENT", "PERMISSION_DENIED", "UNAUTHENTICATED",
                             "NOT_FOUND", "FAILED_PRECONDITION"})


def error_kind(exc: BaseException) -> str:
    """The gRPC status name of an API error (UNAVAILABLE, ...), else the exception's class."""
    if isinstance(exc, api_exceptions.GoogleAPICallError) and exc.grpc_status_code is not None:
        return str(exc.grpc_status_code.name)
    if isinstance(exc, grpc.aio.AioRpcError):
        return str(exc.code().name)
    return type(exc).__name__


def describe(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, api_exceptions.GoogleAPICallError) else str(exc)
    text = " ".join(str(text).split())
    return text if len(text) <= 300 else text[:297] + "..."


class FailureLog:
    """Logs each kind of failure once, until `recovered()` says every call succeeded."""

    def __init__(self) -> None:
        self._reported: set[str] = set()

    def call_failed(self, kind: str, exc: BaseException, project_id: str) -> None:
        hint = ""
        if kind == "PERMISSION_DENIED":
            hint = (f" (the credentials need roles/monitoring.metricWriter on project "
                    f"{project_id})")
        level = logging.ERROR if kind in _NEEDS_OPERATOR else logging.WARNING
        if kind in TRANSIENT:
            what = "the API is unavailable or too slow, retrying each cycle"
        elif isinstance(exc, api_exceptions.GoogleAPICallError):
            what = "points were refused"
        else:
            what = "the call failed"
        self.report(kind, f"{what}: {kind}: {describe(exc)}{hint}", level)

    def report(self, kind: str, message: str, level: int) -> None:
        if kind in self._reported:
            return
        self._reported.add(kind)
        log.log(level, "Google Cloud Monitoring export: %s (logged once until it recovers)",
                message)

    def recovered(self) -> None:
        if self._reported:
            log.info("Google Cloud Monitoring export works again (after %s)",
                     ", ".join(sorted(self._reported)))
            self._reported.clear()
