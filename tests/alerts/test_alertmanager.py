"""Alertmanager payloads read into alerts: what cannot be stored or sent is refused with the
JSON path of the field (issue 12: a lone surrogate in a label was a 500)."""

from __future__ import annotations

from typing import Any

import pytest

from alerts.alertmanager import PayloadError, parse


def payload(**alert: Any) -> dict[str, Any]:
    return {"version": "4", "alerts": [{"status": "firing",
                                         "labels": {"alertname": "DiskFull"}, **alert}]}


def test_a_good_payload_parses() -> None:
    [alert] = parse(payload(labels={"alertname": "DiskFull", "team": "db"},
                            startsAt="2026-11-26T10:00:00Z"))
    assert alert.labels["team"] == "db" and alert.starts_at is not None


@pytest.mark.parametrize(("alert", "field"), [
    ({"labels": {"alertname": "\udc80"}}, "alerts[0].labels.alertname"),
    ({"labels": {"alertname": "A", "\ud800x": "v"}}, "alerts[0].labels"),
    ({"annotations": {"summary": "a\udfffb"}}, "alerts[0].annotations.summary"),
    ({"startsAt": "9999-12-31T23:59:59-23:59"}, "alerts[0].startsAt"),
    ({"endsAt": "9999-12-31T23:59:59-23:59"}, "alerts[0].endsAt"),
])
def test_refused_with_the_field(alert: dict[str, Any], field: str) -> None:
    with pytest.raises(PayloadError) as info:
        parse(payload(**alert))
    assert info.value.field == field
