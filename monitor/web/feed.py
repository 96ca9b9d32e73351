"""The incidents as an Atom feed (RFC 4287) for subscribers: one entry when an incident opens and
one when it is resolved, each with a stable id, so a reader shows every change once. Built from
the status data, so a public page's feed holds nothing its page does not show.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

FEED_ID = "urn:crypitor:status:incidents"


def _entry(ident: str, title: str, updated: str, text: str) -> str:
    return (f"<entry><id>{escape(ident)}</id><title>{escape(title)}</title>"
            f"<updated>{escape(updated)}</updated>"
            f'<content type="text">{escape(text)}</content></entry>')


def render_feed(data: Mapping[str, Any]) -> str:
    """The feed for `StatusBoard.status()`'s data. Its links are relative (RFC 4287 allows it,
    resolved against the feed's own URL), so no host name a request claimed is echoed."""
    entries: list[tuple[str, str]] = []  # (updated, xml)
    for i in data["incidents"]:
        ident = f"urn:crypitor:incident:{i['id']}"
        summary = i.get("summary") or ""
        if i["status"] == "maintenance":
            entries.append((i["started_at"], _entry(
                f"{ident}:maintenance", f"MAINTENANCE: {i['title']}", i["started_at"],
                f"Maintenance {i['title']} from {i['started_at']} until {i['resolved_at']}.")))
            continue
        if i["started_at"]:
            entries.append((i["started_at"], _entry(
                f"{ident}:opened", f"FIRING: {i['title']}", i["started_at"],
                f"{i['title']} ({i['severity'] or 'no severity'}) since {i['started_at']}. "
                + summary)))
        if i["status"] == "resolved" and i["resolved_at"]:
            entries.append((i["resolved_at"], _entry(
                f"{ident}:resolved", f"RESOLVED: {i['title']}", i["resolved_at"],
                f"{i['title']} resolved at {i['resolved_at']} (since {i['started_at']}).")))
    entries.sort(key=lambda e: e[0], reverse=True)
    updated = entries[0][0] if entries else data["updated"]
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<id>{FEED_ID}</id><title>{escape(data['title'])}: incidents</title>"
        f"<updated>{escape(updated)}</updated>"
        f"<author><name>{escape(data['title'])}</name></author>"
        '<link rel="self" href="/feed.atom"/>'
        '<link rel="alternate" type="text/html" href="/"/>'
        + "".join(xml for _, xml in entries) + "</feed>")
