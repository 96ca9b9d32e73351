"""What the Telegram transport lets out besides messages: its failures as `NotifyError`s with
a retry hint, and its logs and errors with the bot token (which sits in every URL) redacted.
"""

from __future__ import annotations

import logging
import warnings
from datetime import timedelta
from urllib.parse import quote

from telegram import error as tg
from telegram.warnings import PTBDeprecationWarning

from alerts import NotifyError

REDACTED = "<redacted>"
RETRY_HINT = 5.0  # seconds, for network errors, timeouts and 5xx answers
_FORMATTER = logging.Formatter()


def redact(text: str, token: str) -> str:
    """`text` with the token (raw or percent-encoded) replaced by "<redacted>"."""
    if not token:
        return text
    for form in {token, quote(token, safe="")}:
        text = text.replace(form, REDACTED)
    return text


class TokenFilter(logging.Filter):
    """Rewrites any record whose message, traceback or stack mentions the token."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record: let logging report it as it always does
            return True
        if redact(message, self.token) != message:
            record.msg, record.args = redact(message, self.token), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(_FORMATTER.formatException(record.exc_info), self.token)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.token)
        return True


def notify_error(method: str, exc: tg.TelegramError, token: str) -> NotifyError:
    """`exc` (scrubbed of the token) as the NotifyError `method` failed with."""
    _scrub(exc, token)
    retry_after: float | None = RETRY_HINT
    if isinstance(exc, tg.RetryAfter):
        retry_after = _seconds(exc)
    elif isinstance(exc, tg.BadRequest | tg.Forbidden | tg.InvalidToken | tg.EndPointNotFound
                    | tg.ChatMigrated):
        retry_after = None
    # NetworkError (connection trouble, 5xx), TimedOut, Conflict: worth another try
    detail = redact(str(exc), token)
    return NotifyError(f"telegram {method}: {type(exc).__name__}: {detail}", retry_after)


def _seconds(exc: tg.RetryAfter) -> float:
    with warnings.catch_warnings():  # ptb 22 warns that the int form will become timedelta
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _scrub(exc: BaseException, token: str) -> None:
    """Removes the token from the messages of `exc` and every exception in its chain."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, tg.TelegramError):
            e.message = redact(e.message, token)
        if any(token in str(a) or quote(token, safe="") in str(a) for a in e.args):
            e.args = tuple(redact(str(a), token) for a in e.args)
        todo += [c for c in (e.__cause__, e.__context__) if c is not None]
