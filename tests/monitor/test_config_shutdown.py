"""`[service].shutdown_drain` and `shutdown_timeout`: durations with defaults of 5 s and 30 s,
"0s" allowed, out-of-range or malformed values refused naming the key and the value."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from monitor.config import ConfigError, parse

PATH = Path("/tmp/config.toml")


def test_defaults_and_zero() -> None:
    section = parse({}, PATH).service
    assert (section.shutdown_drain, section.shutdown_timeout) == (5.0, 30.0)
    text = '[service]\nshutdown_drain = "0s"\nshutdown_timeout = "1m30s"\n'
    section = parse(tomllib.loads(text), PATH).service
    assert (section.shutdown_drain, section.shutdown_timeout) == (0.0, 90.0)


@pytest.mark.parametrize(("line", "error"), [
    ('shutdown_drain = "soon"', 'service.shutdown_drain: must be a duration like "30s" '
                                '(got "soon")'),
    ("shutdown_drain = 5", 'service.shutdown_drain: must be a duration like "30s" (got 5)'),
    ('shutdown_drain = "11m"', "service.shutdown_drain: must be between 0s and 10m (got 660"),
    ('shutdown_timeout = "2h"', "service.shutdown_timeout: must be between 0s and 1h "
                                "(got 7200"),
])
def test_bad_values_name_the_key_and_the_value(line: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(tomllib.loads(f"[service]\n{line}\n"), PATH)
    issues = [str(i) for i in info.value.issues]
    assert len(issues) == 1 and issues[0].startswith(error), issues
