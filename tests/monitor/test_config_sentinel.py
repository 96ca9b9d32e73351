"""`[service].queue` takes a redis+sentinel:// URL; a bad one is a config error naming the
key and the value, with the password replaced."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from monitor.config import ConfigError, parse


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(tomllib.loads(text), Path("/tmp/config.toml"))
    return [str(i) for i in info.value.issues]


def test_a_sentinel_queue_is_accepted() -> None:
    url = "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/mymaster/0"
    config = parse(tomllib.loads(f'[service]\nqueue = "{url}"\n'), Path("/tmp/config.toml"))
    assert config.service.queue == url


@pytest.mark.parametrize(("queue", "message"), [
    ("redis+sentinel://:s3cret@h1:26379",
     "service.queue: is not a usable redis+sentinel:// URL: the path must name the Sentinel "
     'service, like /mymaster or /mymaster/0 (got "redis+sentinel://:***@h1:26379")'),
    ("redis+sentinel://app:s3cret@h1:99999/m",
     "service.queue: is not a usable redis+sentinel:// URL: 'h1:99999': the port must be a "
     'number from 1 to 65535 (got "redis+sentinel://app:***@h1:99999/m")'),
    ("redis+sentinel://h1/m/zero",
     "service.queue: is not a usable redis+sentinel:// URL: the path must be /service_name or "
     '/service_name/<database number> (got "redis+sentinel://h1/m/zero")'),
])
def test_a_bad_sentinel_queue_names_the_key_and_hides_the_password(
        queue: str, message: str) -> None:
    errors = errors_of(f'[service]\nqueue = "{queue}"\n')
    assert errors == [message]
    assert "s3cret" not in "".join(errors)
