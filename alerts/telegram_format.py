"""A `Notification` as one Telegram message in HTML parse mode, with its inline buttons.

The first line says FIRING or RESOLVED, the severity and the rule. A firing alert then says
in plain words what fails (`alerts.headline`), the target's URL without credentials, its
labels, since when, from where (clustered), its runbook and dashboard links; a resolved one
what recovered and after how long, never its firing headline. A `/silence` hint ends a FIRING.

Every label and annotation is user-controlled: it is clipped first, then escaped, so a clip
never cuts an entity; a field's limit counts its escaped UTF-16 length, so one alert always
fits, whatever its labels hold. The message is built from whole lines and stays within
Telegram's 4096 limit counted in UTF-16 code units, as Telegram counts; alerts that do not fit
are summed up in a last "… and N more" line.

Buttons name the first firing alert's fingerprint (`s1h:<fp>`, `ack:<fp>`): with the default
grouping by alertname and target a group is one alert, and for a larger group the bot finds the
group from that alert. `parse_callback()` reads the data back.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from alerts.headline import from_probe, headline, recovered
from alerts.model import Alert, Notification

MAX_TEXT = 4096  # UTF-16 code units, after Telegram's entity parsing; we count before
MAX_FIELD = 300  # UTF-16 units one label or annotation may take, once escaped
MAX_CALLBACK_DATA = 64  # bytes
MAX_LINK = 1024  # UTF-16 units of a runbook or dashboard URL made a link (longer: left out)
SILENCE_1H, ACK = "s1h", "ack"

Buttons = tuple[tuple[str, str], ...]  # (label, callback_data), one row
TargetURL = Callable[[str], str]  # target name → its URL as it may be shown ("": unknown)
_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Message:
    text: str  # HTML parse mode
    buttons: Buttons = ()


def tg_len(text: str) -> int:
    """The length Telegram counts: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def escape(text: str, limit: int | None = MAX_FIELD) -> str:
    """`text` escaped for HTML mode, clipped first (with "…") so that the result takes at
    most `limit` UTF-16 units; None: no clip. Clipping works on whole characters, before
    their escaping, so it never splits an entity or a surrogate pair."""
    escaped = html.escape(text, quote=False)
    if limit is None or tg_len(escaped) <= limit:
        return escaped
    pieces: list[str] = []
    used = 0
    for i, char in enumerate(text):
        piece = html.escape(char, quote=False)
        size = tg_len(piece)
        # keep room for the "…" unless this is the last character
        if used + size + (1 if i < len(text) - 1 else 0) > limit:
            pieces.append("…")
            break
        pieces.append(piece)
        used += size
    return "".join(pieces)


def callback_data(action: str, fingerprint: str) -> str:
    data = f"{action}:{fingerprint}"
    if len(data.encode()) > MAX_CALLBACK_DATA:
        raise ValueError(f"callback data over {MAX_CALLBACK_DATA} bytes: {data!r}")
    return data


def parse_callback(data: str) -> tuple[str, str] | None:
    """(action, fingerprint) of a button's data, or None when it is not one of ours."""
    action, sep, fp = data.partition(":")
    return (action, fp) if sep and action in (SILENCE_1H, ACK) and fp else None


def short_duration(seconds: float) -> str:
    """45s, 3m, 2h 5m, 3d 4h: the two largest units."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        h, m = divmod(s // 60, 60)
        return f"{h}h {m}m" if m else f"{h}h"
    d, h = divmod(s // 3600, 24)
    return f"{d}d {h}h" if h else f"{d}d"


def utc(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_notification(notification: Notification, now: datetime,
                        target_url: TargetURL | None = None) -> Message:
    """The message for one group: a FIRING (what is failing now, and what of the group
    recovered) or a RESOLVED (what recovered, after how long). `target_url` gives a
    target's URL as it may be shown (no credentials)."""
    firing, resolved = notification.firing, notification.resolved
    url = target_url or (lambda _target: "")
    lines = _header(notification)
    single = len(firing) + len(resolved) == 1
    blocks = [_firing_block(a, now, url, single) for a in firing]
    resolved_blocks = [_resolved_block(a, now, url, single) for a in resolved]
    if resolved_blocks and firing:
        # the section title travels with its first alert, so it is never left dangling
        resolved_blocks[0] = f"✅ <b>RESOLVED</b> ({len(resolved)})\n{resolved_blocks[0]}"
    text = _fit(lines, [*blocks, *resolved_blocks], _silence_hint(firing))
    buttons: Buttons = ()
    if firing:
        fp = firing[0].fingerprint
        buttons = (("Silence 1h", callback_data(SILENCE_1H, fp)),
                   ("Ack", callback_data(ACK, fp)))
    return Message(text, buttons)


def _fit(header: Sequence[str], blocks: Sequence[str], footer: str = "") -> str:
    text = "\n".join(header)
    tail = f"\n\n{footer}" if footer else ""
    # room for the footer and the longest "… and N more" is kept until every block is in
    reserve = tg_len(_more(len(blocks))) + tg_len(tail)
    used = tg_len(text)
    for i, block in enumerate(blocks):
        piece = "\n\n" + block
        size = tg_len(piece)
        last = i == len(blocks) - 1
        if used + size + (tg_len(tail) if last else reserve) > MAX_TEXT:
            return text + _more(len(blocks) - i) + tail
        text, used = text + piece, used + size
    return text + tail


def _more(n: int) -> str:
    return f"\n\n… and {n} more"


def _header(n: Notification) -> list[str]:
    alerts = n.firing or n.resolved
    severity = _worst(a.labels.get("severity", "") for a in alerts)
    names = {a.name for a in alerts}
    name = n.group_labels.get("alertname") or (names.pop() if len(names) == 1 else "")
    status = "🔴 <b>FIRING</b>" if n.firing else "✅ <b>RESOLVED</b>"
    parts = [status]
    if severity and severity != "none":
        parts.append(escape(severity.upper(), 40))
    if name:
        parts.append(f"<b>{escape(name, 120)}</b>")
    total = len(n.firing) + len(n.resolved)
    if total > 1:
        parts.append(f"{len(alerts)} alert{'' if len(alerts) == 1 else 's'}")
    lines = [" · ".join(parts)]
    # one alert says its own labels; a larger group names what its alerts share
    rest = [f"{k}={v}" for k, v in sorted(n.group_labels.items()) if k != "alertname"]
    if rest and total > 1:
        lines.append(f"<i>{escape(', '.join(rest))}</i>")
    return lines


def _worst(severities: Iterable[str]) -> str:
    known = sorted((s for s in severities if s), key=lambda s: _SEVERITY_ORDER.get(s, 9))
    return known[0] if known else ""


_NOT_SHOWN = frozenset({"alertname", "severity", "target", "type"})  # said elsewhere


def _context(a: Alert, url: TargetURL) -> list[str]:
    """Where: the target's URL (without credentials) and its labels."""
    lines = []
    target = a.labels.get("target", "")
    shown_url = (url(target) if target else "") or a.annotations.get("target_url", "")
    if shown_url:
        lines.append(f"🔗 {escape(shown_url)}")
    labels = [f"{k}={v}" for k, v in sorted(a.labels.items()) if k not in _NOT_SHOWN]
    if labels:
        lines.append(f"🏷 {escape(' · '.join(labels))}")
    return lines


def _links(a: Alert) -> str:
    """The runbook and dashboard of the alert's rule, as links, when it has them."""
    links = []
    for key, label in (("runbook_url", "📖 Runbook"), ("dashboard_url", "📊 Dashboard")):
        href = a.annotations.get(key, "").strip()
        if href.startswith(("https://", "http://")) and tg_len(href) <= MAX_LINK:
            links.append(f'<a href="{html.escape(href, quote=True)}">{label}</a>')
    return " · ".join(links)


def _indent(lines: Sequence[str], single: bool) -> str:
    """One alert's lines: a bullet and indentation when the message holds several."""
    if single:
        return "\n".join(lines)
    return "\n".join([f"• {lines[0]}", *(f"  {line}" for line in lines[1:])])


def _firing_block(a: Alert, now: datetime, url: TargetURL, single: bool) -> str:
    title = headline(a)
    lines = [f"<b>{escape(title)}</b>", *_context(a, url)]
    if a.starts_at is not None:
        lines.append(f"🕑 since {utc(a.starts_at)} "
                     f"(for {short_duration((now - a.starts_at).total_seconds())})")
    locations = a.annotations.get("locations")  # [cluster]: where it failed from
    if locations:
        lines.append(f"📍 failing from {escape(locations, 200)}")
    value = a.annotations.get("value", "")
    shown = re.findall(r"= ([^,]+)", value)
    if value and not from_probe(a) and any(v.strip() not in title for v in shown):
        lines.append(f"value <code>{escape(value, 120)}</code>")
    detail = a.annotations.get("detail")
    if detail and not from_probe(a):
        lines.append(f"<i>{escape(detail)}</i>")
    links = _links(a)
    if links:
        lines.append(links)
    return _indent(lines, single)


def _resolved_block(a: Alert, now: datetime, url: TargetURL, single: bool) -> str:
    what = f"<b>{escape(recovered(a))}</b>"
    if a.starts_at is not None:
        end = a.ends_at or now
        lines = [f"{what} after {short_duration((end - a.starts_at).total_seconds())}",
                 f"🕑 {utc(a.starts_at)} → {utc(end)}"]
    else:
        lines = [what] + ([f"🕑 resolved {utc(a.ends_at)}"] if a.ends_at is not None else [])
    return _indent([*lines, *_context(a, url)], single)


def _silence_hint(firing: Sequence[Alert]) -> str:
    """How to silence from the chat: the one target (or rule) when there is one."""
    if not firing:
        return ""
    targets = {a.labels.get("target", "") for a in firing}
    names = {a.name for a in firing}
    what = (targets.pop() if len(targets) == 1 and "" not in targets
            else names.pop() if len(names) == 1 else "")
    if what and re.fullmatch(r"\S{1,64}", what):
        return f"🔕 <code>/silence {escape(what, 80)} 1h</code> (and a reason), or the button"
    return "🔕 /silence &lt;target or alertname&gt; &lt;duration&gt; [reason]"
