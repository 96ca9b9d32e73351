"""The status page at `/`, rendered from the status data (`monitor.web.status_data`): targets by
group, each with its state, uptime bars (24 hours, 90 days), a latency sparkline and its uptime
over 24 h / 7 d / 30 d; the incidents; the SLOs.

Self-contained: one inline stylesheet (allowed by its hash in the Content-Security-Policy,
`CSP`), inline SVG, no script, no request to any other origin; a meta refresh keeps it current.
Cards instead of a table, so it reflows to 400 px without scrolling sideways. Every string
is HTML-escaped.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any

REFRESH = 60  # seconds between the page's own reloads

STYLE = """
*{box-sizing:border-box}
body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;padding:1em;max-width:60em;color:#1f2328;
background:#f6f8fa}
h1{font-size:1.5em;margin:.2em 0}h2{font-size:1.1em;margin:1.4em 0 .5em}
.sum{margin:.3em 0 1em;color:#57606a}.ok{color:#1a7f37}.bad{color:#cf222e}
.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.6em .8em;margin:.5em 0}
.head{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:baseline;gap:.2em .8em}
.name{font-weight:600;overflow-wrap:anywhere;min-width:0}
.st{font-weight:700;white-space:nowrap;padding:0 .4em;border-radius:4px}
.st.up{color:#fff;background:#1a7f37}.st.down{color:#fff;background:#cf222e}
.st.pending,.st.maintenance{color:#fff;background:#6e7781}
.meta{color:#57606a;font-size:.9em;overflow-wrap:anywhere}
.row{display:flex;align-items:center;gap:.5em;margin-top:.3em}
.row span{flex:0 0 3.2em;font-size:.8em;color:#57606a}
.row svg{flex:1 1 auto;min-width:0;width:100%;height:18px;display:block}
.spark{height:28px}
.b0{fill:#1a7f37}.b1{fill:#9be9a8}.b2{fill:#d4a72c}.b3{fill:#cf222e}.bn{fill:#d0d7de}
.line{fill:none;stroke:#0969da;stroke-width:1.5;vector-effect:non-scaling-stroke}
ul{padding-left:1.2em}li{margin:.3em 0;overflow-wrap:anywhere}
.foot{margin-top:2em;font-size:.85em;color:#57606a}
"""
_DIGEST = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
CSP = (f"default-src 'none'; style-src 'sha256-{_DIGEST}'; img-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
STATE_WORDS = {"up": "UP", "down": "DOWN", "pending": "PENDING", "maintenance": "MAINTENANCE"}


def _pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def _when(iso: str | None) -> str:
    return "" if not iso else datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


def _shade(uptime: float | None) -> str:
    if uptime is None:
        return "bn"
    return "b0" if uptime >= 0.999 else "b1" if uptime >= 0.99 else "b2" if uptime >= 0.95 \
        else "b3"


def bars(buckets: Sequence[Mapping[str, Any]], label: str) -> str:
    """One rect per bucket, coloured by its uptime, each with a tooltip."""
    n = max(len(buckets), 1)
    rects = []
    for i, b in enumerate(buckets):
        tip = f"{_when(b['start'])}: {_pct(b['uptime'])}"
        rects.append(f'<rect x="{i * 10}" width="8" height="18" class="{_shade(b["uptime"])}">'
                     f"<title>{escape(tip)}</title></rect>")
    return (f'<svg viewBox="0 0 {n * 10 - 2} 18" preserveAspectRatio="none" role="img" '
            f'aria-label="{escape(label)}">' + "".join(rects) + "</svg>")


def sparkline(buckets: Sequence[Mapping[str, Any]]) -> str:
    """Latency per bucket as a line scaled to its own maximum; gaps where nothing ran."""
    values = [b["latency_ms"] for b in buckets]
    top = max((v for v in values if v is not None), default=0.0) or 1.0
    n = max(len(values) - 1, 1)
    segments: list[list[str]] = []
    current: list[str] = []
    for i, v in enumerate(values):
        if v is None:
            if current:
                segments.append(current)
            current = []
            continue
        current.append(f"{i * 100 / n:.1f},{28 - 26 * v / top:.1f}")
    if current:
        segments.append(current)
    lines = "".join(f'<polyline class="line" points="{" ".join(_flat(seg))}"/>'
                    for seg in segments)
    return (f'<svg class="spark" viewBox="0 0 100 30" preserveAspectRatio="none" role="img" '
            f'aria-label="latency, last 24 hours, peak {top:.0f} ms">{lines}</svg>')


def _flat(segment: list[str]) -> list[str]:
    """A lone point drawn as a short dash, so that it shows."""
    if len(segment) > 1:
        return segment
    x, y = (float(v) for v in segment[0].split(","))
    return [f"{max(x - 1.5, 0):.1f},{y:.1f}", f"{x + 1.5:.1f},{y:.1f}"]


def _target(t: Mapping[str, Any]) -> str:
    state = "maintenance" if t.get("maintenance") and t["state"] != "up" else t["state"]
    u = t["uptime"]
    latency = "-" if t["latency_ms"] is None else f"{t['latency_ms']:.0f} ms"
    meta = [f"24 h {_pct(u.get('24h'))} · 7 d {_pct(u.get('7d'))} · 30 d "
            f"{_pct(u.get('30d'))} · {latency}"]
    if t.get("url"):
        meta.append(escape(t["url"]))
    failure = t.get("failure")
    if failure:
        meta.append(f'<span class="bad">{escape(str(failure["reason"] or ""))}: '
                    f'{escape(failure["detail"])}</span>')
    for loc in t.get("locations", []):
        where = escape(loc["name"]) + (f" ({escape(loc['instance'])})" if "instance" in loc
                                       else "")
        meta.append(f"{where}: {STATE_WORDS[loc['state']]}")
    return (
        f'<div class="card" id="t-{escape(t["name"])}"><div class="head">'
        f'<span class="name">{escape(t["name"])}</span>'
        f'<span class="st {state}">{STATE_WORDS[state]}</span></div>'
        + "".join(f'<div class="meta">{m}</div>' for m in meta)
        + f'<div class="row"><span>24 h</span>{bars(t["history"], "uptime per hour")}</div>'
        f'<div class="row"><span>90 d</span>{bars(t["daily"], "uptime per day")}</div>'
        f'<div class="row"><span>latency</span>{sparkline(t["history"])}</div></div>')


def _incident(i: Mapping[str, Any]) -> str:
    if i["status"] == "maintenance":
        when = f"maintenance until {_when(i['resolved_at'])}"
        css = "st maintenance"
    elif i["status"] == "firing":
        when = f"since {_when(i['started_at'])}"
        css = "bad"
    else:
        when = f"{_when(i['started_at'])}, resolved {_when(i['resolved_at'])}"
        css = "ok"
    summary = f"<br>{escape(i['summary'])}" if i.get("summary") else ""
    return (f'<li><b class="{css}">{escape(i["status"].upper())}</b> '
            f"{escape(i['title'])} <small>{escape(when)}</small>{summary}</li>")


def _slo(s: Mapping[str, Any]) -> str:
    objective = s.get("objective")
    return (f"<li><b>{escape(str(s.get('name')))}</b>: attained "
            f"{_pct(s.get('attained'), 3)} of "
            f"{_pct(objective, 3) if isinstance(objective, float | int) else '-'} over "
            f"{escape(str(s.get('window')))}; error budget left "
            f"{_pct(s.get('error_budget_remaining'), 1)}</li>")


def render_status_page(data: Mapping[str, Any]) -> str:
    """The page for `StatusBoard.status()`'s data."""
    targets = [t for g in data["groups"] for t in g["targets"]]
    down = sum(1 for t in targets if t["state"] == "down")
    firing = [i for i in data["incidents"] if i["status"] != "resolved"]
    resolved = [i for i in data["incidents"] if i["status"] == "resolved"]
    summary = (f'<span class="bad">{down} of {len(targets)} down</span>' if down else
               f'<span class="ok">All {len(targets)} up</span>' if targets else "No targets")
    parts = [f"<h1>{escape(data['title'])}</h1>", f'<p class="sum">{summary}</p>']
    if firing:
        parts.append("<h2>Current incidents</h2><ul>" + "".join(map(_incident, firing))
                     + "</ul>")
    for group in data["groups"]:
        if len(data["groups"]) > 1 or group["name"]:
            parts.append(f"<h2>{escape(group['name'] or 'Other')}</h2>")
        parts += [_target(t) for t in group["targets"]]
    if data["slos"]:
        parts.append("<h2>Service level objectives</h2><ul>"
                     + "".join(map(_slo, data["slos"])) + "</ul>")
    parts.append("<h2>Resolved in the last 7 days</h2>" + (
        "<ul>" + "".join(map(_incident, resolved)) + "</ul>" if resolved else "<p>None.</p>"))
    links = '<a href="/feed.atom">incidents feed</a>'
    if not data["public"]:
        links += ' · <a href="/metrics">metrics</a> · <a href="/api/v1/targets">API</a>'
    parts.append(f'<p class="foot">Updated {_when(data["updated"])}, refreshed every '
                 f"{REFRESH} s · {links}</p>")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH}">'
        f"<title>{escape(data['title'])}</title>"
        '<link rel="alternate" type="application/atom+xml" href="/feed.atom">'
        f"<style>{STYLE}</style></head><body>" + "".join(parts) + "</body></html>")
