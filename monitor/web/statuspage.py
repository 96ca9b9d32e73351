"""The status page at `/`: one table a person can read without Grafana.

Every string from config or from a target's answer is HTML-escaped. With `[cluster]` each
target shows the cluster's state and, below it, every location's (stale ones marked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape

from monitor.cluster import TargetView
from monitor.runtime import TargetState
from probes.base import ProbeResult

_STYLE = """
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.4em .6em;border-bottom:1px solid #ddd;vertical-align:top}
.up{color:#137333;font-weight:600}.down{color:#c5221f;font-weight:600}.wait{color:#888}
small{color:#666}
"""


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _since(state: TargetState, now: datetime) -> str:
    if state.since is None:
        return ""
    seconds = int((now - state.since).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"for {seconds // size}{unit}"
    return f"for {seconds}s"


def _detail(last: ProbeResult | None) -> str:
    if last is not None and not last.success:
        reason = last.reason.value if last.reason else ""
        return f"{escape(reason)}: {escape(last.detail)}"
    if last is not None:
        return f"{last.duration * 1000:.0f} ms"
    return ""


def _locations(view: TargetView) -> str:
    parts = []
    for location, x in view.locations.items():
        word, css = ("UP", "up") if x.result.success else ("DOWN", "down")
        if x.stale:
            word, css = f"{word}, stale", "wait"
        parts.append(f'{escape(location)}: <span class="{css}">{word}</span> '
                     f"({escape(x.instance)})")
    return "<br><small>" + " · ".join(parts) + "</small>" if parts else ""


def render_status_page(states: Sequence[TargetState],
                       uptime: Mapping[str, Mapping[str, float | None]], now: datetime,
                       views: Mapping[str, TargetView] | None = None) -> str:
    """The page; `views` ([cluster]): each target as every location sees it."""
    def up(s: TargetState) -> bool | None:
        return s.up if views is None or s.name not in views else views[s.name].up

    down = sum(1 for s in states if up(s) is False)
    rows = []
    for s in states:
        view = views.get(s.name) if views is not None else None
        state_up = up(s)
        since = _since(s, now) if state_up == s.up else ""
        if state_up is None:
            status = '<span class="wait">pending</span>'
        elif state_up:
            status = f'<span class="up">UP</span> <small>{since}</small>'
        else:
            status = f'<span class="down">DOWN</span> <small>{since}</small>'
        detail = _detail(s.last if view is None else view.last)
        if view is not None:
            status += _locations(view)
        u = uptime.get(s.name, {})
        rows.append(
            f"<tr><td>{escape(s.name)}<br><small>{escape(s.config.display_url)}</small></td>"
            f"<td>{escape(s.config.type)}</td><td>{status}</td><td>{detail}</td>"
            f"<td>{_pct(u.get('24h'))}</td><td>{_pct(u.get('7d'))}</td>"
            f"<td>{_pct(u.get('30d'))}</td></tr>")
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        '<meta http-equiv="refresh" content="15"><title>Crypitor Monitor</title>'
        f"<style>{_STYLE}</style></head><body><h1>Crypitor Monitor</h1>"
        f"<p>{len(states)} targets, {down} down. <small>{now:%Y-%m-%d %H:%M:%S} UTC · "
        '<a href="/metrics">metrics</a> · <a href="/api/v1/targets">API</a></small></p>'
        "<table><tr><th>target</th><th>type</th><th>status</th><th>last probe</th>"
        "<th>24 h</th><th>7 d</th><th>30 d</th></tr>"
        + "".join(rows) + "</table></body></html>"
    )
