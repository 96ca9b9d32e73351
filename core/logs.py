"""How `crypitor run` and `crypitor service` write their log: one line per event on stderr,
as text for people or as JSON for Google Cloud Logging (`--log-format`, `[monitor].log_format`).

Every logger's records pass through the one root handler set here, so the lines of aiohttp,
APScheduler and python-telegram-bot come out in the same format as ours. The JSON form is
Cloud Logging's structured payload: `time` (RFC 3339, UTC, milliseconds), `severity`,
`message`, `logger`, and the event's own fields (what a call passed as `extra=`); a traceback
goes inside `message`, so one event stays one entry.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

FORMATS = ("text", "json")
# The attributes every LogRecord has: whatever else a record carries came from `extra=`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_SEVERITY = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARNING",
             logging.ERROR: "ERROR", logging.CRITICAL: "CRITICAL"}


def _utc(created: float) -> str:
    whole = int(created)
    millis = int((created - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def severity(levelno: int) -> str:
    """Cloud Logging's severity for a logging level; a custom level gets the next one up."""
    for level in sorted(_SEVERITY):
        if levelno <= level:
            return _SEVERITY[level]
    return "CRITICAL"


class TextFormatter(logging.Formatter):
    """`2026-12-06T15:00:00.123Z WARNING crypitor: message`, in UTC."""

    def format(self, record: logging.LogRecord) -> str:
        line = (f"{_utc(record.created)} {record.levelname:<7} {record.name}: "
                f"{record.getMessage()}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record, in Cloud Logging's structured form."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            message += "\n" + self.formatStack(record.stack_info)
        entry: dict[str, Any] = {"time": _utc(record.created),
                                 "severity": severity(record.levelno),
                                 "message": message, "logger": record.name}
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in entry:
                entry[key] = value
        return json.dumps(entry, ensure_ascii=False, default=str)


def setup(level: str, form: str = "text") -> None:
    """Send every record at `level` or above to stderr, formatted as `form` (text | json);
    warnings of the `warnings` module too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
