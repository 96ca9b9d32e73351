"""The background dashboard push of `crypitor run`: one push at start, retried with backoff
while Grafana is unreachable or answers 5xx, so a Grafana failure never stops monitoring.
`crypitor run` hands it its supervisor's `spawn`: a bug of ours (a malformed dashboard) is
then logged, counted and the push tried again with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from dashboards.grafana import PushReport, push
from dashboards.grafana_api import GrafanaError, shown_url

log = logging.getLogger(__name__)
# (name, factory) -> the running task: the monitor's `core.supervisor.Supervisor.supervise`
Spawn = Callable[[str, Callable[[], Awaitable[None]]], "asyncio.Task[None]"]


class GrafanaPusher:
    """Pushes once in the background: retries while Grafana is unreachable or answers 5xx
    (waiting `first_retry`, doubling up to `max_retry`), gives up on any other Grafana
    error, logs each distinct failure once, and never raises into its owner. Without a
    `spawn`, a bug of ours ends the push, logged at ERROR."""

    def __init__(self, url: str, token: str, folder: str, prometheus_url: str,
                 dashboards: Sequence[Mapping[str, Any]], *, timeout: float = 10.0,
                 first_retry: float = 5.0, max_retry: float = 300.0,
                 spawn: Spawn | None = None) -> None:
        if not 0 < first_retry <= max_retry:
            raise ValueError("retry delays must satisfy 0 < first_retry <= max_retry")
        self._args = (url, token, folder, prometheus_url, list(dashboards), timeout)
        self._first_retry, self._max_retry = first_retry, max_retry
        self._spawn = spawn
        self._task: asyncio.Task[None] | None = None
        self.attempts = 0
        self.report: PushReport | None = None
        self.last_error: GrafanaError | None = None

    def start(self) -> None:
        """Starts the push on the running loop; a second call does nothing."""
        if self._task is None:
            spawn = self._spawn or _unsupervised
            self._task = spawn("grafana-push", self._run)

    async def wait(self) -> PushReport | None:
        """The report once the push succeeded, or None when it gave up or was stopped."""
        if self._task is None:
            return None
        try:
            await asyncio.shield(self._task)
        except asyncio.CancelledError:
            if self._task.cancelled():
                return None
            raise
        return self.report

    async def stop(self) -> None:
        """Abandons a push still retrying; returns at once if it already finished."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task])

    async def _run(self) -> None:
        delay, logged = self._first_retry, ""
        while True:
            self.attempts += 1
            try:
                self.report = await push(*self._args)
            except GrafanaError as exc:
                self.last_error = exc
                if not exc.retryable:
                    log.error("Grafana: dashboards not pushed: %s", exc)
                    return
                if exc.message != logged:
                    log.warning("Grafana: dashboards not pushed yet: %s (retrying, up to "
                                "every %gs)", exc, self._max_retry)
                    logged = exc.message
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry)
                continue
            log.info("Grafana at %s: %s", shown_url(self._args[0]), self.report.summary())
            return


def _unsupervised(name: str, factory: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    async def logged() -> None:
        try:
            await factory()
        except Exception:  # a bug of ours (a malformed dashboard): monitoring goes on
            log.exception("Grafana: dashboards not pushed")
    return asyncio.get_running_loop().create_task(logged(), name=name)
