"""The one seam between a push and grafana-client: a `GrafanaApi` for a URL and token, and
each call's failure translated into `GrafanaError`. `dashboards.grafana` says what to call.

Errors: every failure talking to Grafana is one `GrafanaError` whose message an operator can
act on; `retryable` says whether trying later may help (unreachable, timeout, 5xx). The token
travels only in the Authorization header and never appears in a message or a log line.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from grafana_client.api import GrafanaApi
from grafana_client.client import (
    GrafanaClientError,
    GrafanaException,
    GrafanaServerError,
    GrafanaTimeoutError,
)

REDACTED = "<redacted>"


class GrafanaError(Exception):
    """A push failed: Grafana unreachable, the token refused or short of rights, or an error
    answer. `status` is the HTTP status when Grafana answered; `retryable` is true when the
    same push may succeed later (unreachable, timeout, 5xx)."""

    def __init__(self, message: str, *, status: int | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.message, self.status, self.retryable = message, status, retryable


class GrafanaSession:
    """One GrafanaApi and the translation of its errors into GrafanaError."""

    def __init__(self, url: str, token: str, timeout: float, stop: threading.Event) -> None:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise GrafanaError(f"[grafana].url must be an http(s) URL (got {shown_url(url)!r})")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        prefix = parts.path.strip("/")
        # the URL as messages show it: no user info, no query
        netloc = f"{host}:{port}" if port else host
        self.url = f"{parts.scheme}://{netloc}/{prefix}".rstrip("/")
        self.token, self.timeout, self.stop = token, timeout, stop
        # a str auth becomes grafana-client's TokenAuth: `Authorization: Bearer <token>`
        self.api = GrafanaApi(auth=token or None, host=host,
                              port=port, url_path_prefix=f"{prefix}/" if prefix else "",
                              protocol=parts.scheme, timeout=timeout)

    def close(self) -> None:
        self.api.client.s.close()

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.stop.is_set():
            raise GrafanaError("push cancelled")
        try:
            return fn(*args, **kwargs)
        except GrafanaServerError as exc:
            raise self._error(f"Grafana answered {exc.status_code} for {what}",
                              exc.status_code, retryable=True) from exc
        except GrafanaClientError as exc:
            status = exc.status_code
            if status == 401:
                raise self._error("Grafana rejected the token (401): check [grafana].token",
                                  status) from exc
            if status == 403:
                raise self._error(f"the token lacks permission (403) for {what}",
                                  status) from exc
            raise self._error(f"Grafana refused {what} ({status}): {_message(exc.response)}",
                              status) from exc
        except GrafanaTimeoutError as exc:
            raise self._error(f"cannot reach Grafana at {self.url}: no answer within "
                              f"{self.timeout:g}s", retryable=True) from exc
        except ValueError as exc:  # a 2xx answer that is not JSON (niquests' JSONDecodeError)
            raise self._error(f"Grafana's answer to {what} is not JSON: is {self.url} "
                              "a Grafana?") from exc
        except (GrafanaException, OSError) as exc:
            # GrafanaException with status 0 wraps niquests' HTTPError; its ConnectionError
            # (refused, DNS, TLS) comes through unwrapped, and is an OSError
            raise self._error(f"cannot reach Grafana at {self.url}: {_reason(exc)}",
                              retryable=True) from exc

    def _error(self, message: str, status: int | None = None, *,
               retryable: bool = False) -> GrafanaError:
        # Grafana's own messages and transport reasons are quoted; none should hold the
        # token, but a message is the one place it could escape through.
        if len(self.token) >= 6:
            message = message.replace(self.token, REDACTED)
        return GrafanaError(message, status=status, retryable=retryable)


def _message(response: Any) -> str:
    if isinstance(response, dict) and isinstance(response.get("message"), str):
        return str(response["message"])[:300]
    return str(response)[:300] or "no message"


def _reason(exc: BaseException) -> str:
    """A short reason from a transport error ("Connection refused", "timed out", …)."""
    inner: BaseException = exc
    for _ in range(8):  # niquests error -> urllib3 MaxRetryError -> .reason -> …
        nxt = getattr(inner, "reason", None)
        if not isinstance(nxt, BaseException) and inner.args:
            nxt = inner.args[0]
        if not isinstance(nxt, BaseException):
            break
        inner = nxt
    text = str(inner)
    if errno := re.search(r"\[Errno -?\d+\]\s*([^'\"()]+)", text):
        return errno.group(1).strip()
    if "resolve" in text.lower():
        return "cannot resolve the host name"
    if "timed out" in text.lower() or "timeout" in type(inner).__name__.lower():
        return "timed out"
    return re.sub(r"^<[^>]*>:\s*", "", text)[:200] or type(inner).__name__


def shown_url(url: str) -> str:
    """`url` without its user info, fit for messages."""
    parts = urlsplit(url)
    if parts.password or parts.username:
        return url.replace(parts.netloc, parts.netloc.rsplit("@", 1)[-1])
    return url
