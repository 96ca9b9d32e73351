"""A batch is checked as a whole when every event is plain (`parsing._plain_batch`) and event
by event otherwise: both ways give the same events, and a batch of types already seen still
has each bad event refused naming its field."""

from __future__ import annotations

import json

import pytest

from service.api import parsing as parse
from service.models import NewEvent


def body(events: list[dict[str, object]]) -> bytes:
    """As JSON text; a lone surrogate stays a `\\u` escape (it cannot be UTF-8)."""
    try:
        return json.dumps(events, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(events).encode()


PLAIN: dict[str, object] = {"type": "batch.plain", "data": {"n": 1, "deep": [[{"x": "y"}]]}}


def test_plain_and_checked_batches_give_the_same_events() -> None:
    raw = body([PLAIN, {"type": "batch.other", "data": [1, 2.5, "é"]}, PLAIN])
    first = parse.batch(raw)  # new types: checked event by event, then known
    again = parse.batch(raw)  # known types, no keys: checked as a whole
    assert first == again
    assert again[1] == NewEvent("batch.other", None, None, '[1, 2.5, "é"]')
    assert again[0].data_json == json.dumps(PLAIN["data"])


@pytest.mark.parametrize(("event", "status", "field"), [
    ({"type": "batch.plain", "data": {"a": "\udcff"}}, 400, "[1].data"),
    ({"type": "batch.plain", "data": "x" * (parse.MAX_EVENT_BYTES + 1)}, 413, "[1].data"),
    ({"type": "batch.plain", "data": json.loads("[" * 65 + "]" * 65)}, 422, "[1].data"),
    ({"type": "batch plain", "data": 1}, 422, "[1].type"),
    ({"type": "batch.plain", "data": 1, "idempotency_key": ""}, 422, "[1].idempotency_key"),
])
def test_a_bad_event_among_known_types_is_refused_naming_it(event: dict[str, object],
                                                              status: int, field: str) -> None:
    parse.batch(body([PLAIN]))  # the type is known from here on
    raw = body([PLAIN, event, PLAIN])
    with pytest.raises(parse.BadRequest) as refused:
        parse.batch(raw)
    assert (refused.value.status, refused.value.field) == (status, field)


def test_idempotency_keys_are_kept_in_a_batch_of_known_types() -> None:
    parse.batch(body([PLAIN]))
    events = parse.batch(body([PLAIN, {**PLAIN, "idempotency_key": "k-1"}]))
    assert [e.idempotency_key for e in events] == [None, "k-1"]


def test_data_that_is_not_utf8_among_known_types_is_refused_naming_it() -> None:
    parse.batch(body([PLAIN]))
    raw = body([PLAIN, {"type": "batch.plain", "data": "XX"}]).replace(b'"XX"', b'"\xff"')
    with pytest.raises(parse.BadRequest) as refused:
        parse.batch(raw)
    assert refused.value.status == 400
    assert refused.value.field in ("[1].data", None)  # msgspec may refuse it first
