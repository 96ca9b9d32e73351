"""The README's FIRING and RESOLVED examples are what `format_notification` makes of a real
TargetDown alert: this test renders them and fails when the README shows anything else.
`CRYPITOR_WRITE_README=1` writes the rendered text in instead (then review the diff).
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alerts.builtin import BUILTINS
from alerts.evaluate import Evaluator
from alerts.model import Notification
from alerts.telegram_format import MAX_TEXT, format_notification, tg_len
from tests.support.fake_telegram import parse_html

README = Path(__file__).resolve().parents[2] / "README.md"
T0 = datetime(2026, 11, 26, 3, 12, tzinfo=UTC)
LABELS = {"type": "ethereum", "team": "core", "chain": "ethereum"}
URL = "https://eth.example.com/rpc"  # what TargetConfig.display_url shows of a URL with a key
BLOCK = re.compile(r"(<!-- example:(firing|resolved) -->\n```text\n)(.*?)(```)", re.DOTALL)


def examples() -> dict[str, str]:
    ev = Evaluator([r for r in BUILTINS if r.name == "TargetDown"], {}, {"eth-main": LABELS})
    fired = None
    for i in range(3):
        for t in ev.observe("eth-main", LABELS, {"success": False, "failure_reason": "status",
                                                 "status_code": 500},
                            T0 + timedelta(seconds=15 * i), "status 500, expected 200"):
            fired = t.alert
    assert fired is not None
    alert = replace(fired, annotations={
        **fired.annotations, "locations": "eu-west, us-east",
        "runbook_url": "https://runbooks.example.com/TargetDown",
        "dashboard_url": "https://grafana.example.com/d/crypitor-targets"})
    group = {"alertname": "TargetDown", "target": "eth-main"}
    now = T0 + timedelta(minutes=4)
    firing = format_notification(Notification("oncall", "g", group, (alert,)), now,
                                 lambda _t: URL)
    end = T0 + timedelta(minutes=38)
    gone = replace(alert, status="resolved", ends_at=end)
    resolved = format_notification(Notification("oncall", "g", group, (), (gone,)), end,
                                   lambda _t: URL)
    for message in (firing, resolved):
        assert tg_len(message.text) <= MAX_TEXT
    return {"firing": parse_html(firing.text), "resolved": parse_html(resolved.text)}


def test_the_readme_shows_the_messages_as_they_are_rendered() -> None:
    shown = examples()
    text = README.read_text(encoding="utf-8")
    if os.environ.get("CRYPITOR_WRITE_README") == "1":
        text = BLOCK.sub(lambda m: m[1] + shown[m[2]] + "\n" + m[4], text)
        README.write_text(text, encoding="utf-8")
    found = {m[2]: m[3] for m in BLOCK.finditer(text)}
    assert found == {k: v + "\n" for k, v in shown.items()}
    assert shown["firing"].startswith("🔴 FIRING") and shown["resolved"].startswith("✅ RESOLVED")
