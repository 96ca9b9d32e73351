"""`[cluster]` and a target's `locations`: parsing, defaults, the check-config rules between
them and `[service]`, and `[cluster]` as a restart-only key of a reload."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from monitor.config import ClusterSection, Config, ConfigError, parse
from monitor.reload import effective, needs_restart

OFF = "[service]\nenabled = false\n"
CLUSTER = '[cluster]\nredis = "redis://127.0.0.1:6379/1"\n'


def parse_text(text: str) -> Config:
    return parse(tomllib.loads(text), Path("/tmp/config.toml"))


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_text(text)
    return [str(i) for i in info.value.issues]


def target(name: str, locations: str = "") -> str:
    line = f"locations = {locations}\n" if locations else ""
    return f'[[targets]]\nname = "{name}"\ntype = "http"\nurl = "http://127.0.0.1:1/"\n{line}'


def test_without_cluster_nothing_changes() -> None:
    cfg = parse_text(target("a"))
    assert cfg.cluster is None
    assert cfg.targets[0].locations == ()


def test_cluster_defaults_and_values() -> None:
    cfg = parse_text(OFF + "[cluster]\n" + target("a"))
    assert cfg.cluster == ClusterSection()
    assert cfg.cluster.redis == "redis://127.0.0.1:6379/1"
    assert (cfg.cluster.location, cfg.cluster.instance, cfg.cluster.quorum,
            cfg.cluster.lease) == ("default", "", 1, 10.0)
    cfg = parse_text(OFF + '[cluster]\nredis = "env:CLUSTER_REDIS"\nlocation = "eu"\n'
                     'instance = "eu-1"\nquorum = 2\nlease = "3s"\n'
                     + target("a", '["eu", "us"]'))
    assert cfg.cluster == ClusterSection("env:CLUSTER_REDIS", "eu", "eu-1", 2, 3.0)
    assert cfg.targets[0].locations == ("eu", "us")


@pytest.mark.parametrize(("text", "expected"), [
    ('quorum = 0\n', 'cluster.quorum: must be 1 or more (got 0)'),
    ('lease = "500ms"\n', 'cluster.lease: must be at least 1s (got 0.5)'),
    ('lease = "soon"\n', 'cluster.lease: must be a duration like "30s" (got "soon")'),
    ('location = ""\n', 'cluster.location: must be a non-empty name without control '
                        'characters (got "")'),
    ('redis = "http://x"\n', "cluster.redis: must be a redis://, rediss:// or "
                             "redis+sentinel:// URL (got a str)"),
    ('redis = "redis+sentinel://:pw@h1,h2"\n', "cluster.redis: is not a usable "
     "redis+sentinel:// URL: the path must name the Sentinel service"),
    ('redis = "redis://h:6379/db"\n', "cluster.redis: is not a usable redis:// URL"),
    ('leader = true\n', "cluster.leader: unknown key"),
])
def test_bad_cluster_keys_name_key_and_value(text: str, expected: str) -> None:
    errors = errors_of(OFF + "[cluster]\n" + text)
    assert any(e.startswith(expected) for e in errors), errors


def test_cluster_redis_takes_a_sentinel_url_and_never_shows_its_password() -> None:
    cfg = parse_text(OFF + '[cluster]\nredis = "redis+sentinel://h1:26379,h2/crypitor/2"\n'
                     + target("a"))
    assert cfg.cluster is not None
    assert cfg.cluster.redis == "redis+sentinel://h1:26379,h2/crypitor/2"
    errors = errors_of(OFF + '[cluster]\nredis = "redis+sentinel://u:hunter2@h1/a/b/c"\n')
    assert errors and all("hunter2" not in e for e in errors), errors


def test_bad_locations_name_key_and_value() -> None:
    errors = errors_of(OFF + CLUSTER + target("a", '"eu"') + target("b", '["eu", "eu", 3]'))
    assert 'targets[0].locations: must be a list of location names like ["eu", "us"] ' \
           '(got "eu")' in errors
    assert 'targets[1].locations[1]: is listed twice (got "eu")' in errors
    assert "targets[1].locations[2]: must be a non-empty location name without control " \
           "characters (got 3)" in errors


def test_locations_fewer_than_quorum_is_an_error_naming_the_target() -> None:
    text = OFF + CLUSTER + "quorum = 2\n" + target("one", '["eu"]') + \
        target("two", '["eu", "us"]') + target("all")
    assert errors_of(text) == [
        'targets[0].locations: target "one": 1 location(s), fewer than cluster.quorum (2): '
        'its alerts could never fire (got ["eu"])']


def test_cluster_needs_the_service_off_or_on_redis() -> None:
    assert errors_of(CLUSTER) == [
        'service.queue: must be a redis:// or redis+sentinel:// URL with [cluster] (or set '
        'service.enabled = false) (got "sqlite")']
    parse_text(OFF + CLUSTER)
    parse_text('[service]\nqueue = "redis://127.0.0.1:6379/0"\n' + CLUSTER)


def test_locations_without_cluster_is_an_error() -> None:
    assert errors_of(target("a", '["eu"]')) == [
        'targets[0].locations: target "a": needs a [cluster] section (got ["eu"])']
    parse_text(target("a", "[]"))  # empty: as if absent


def test_check_config_prints_the_cluster_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(CLUSTER + "quorum = 3\n" + target("edge", '["eu", "us"]'))
    proc = subprocess.run([sys.executable, "-m", "monitor", "check-config", "-c", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert ('service.queue: must be a redis:// or redis+sentinel:// URL with [cluster]'
            in proc.stderr)
    assert 'targets[0].locations: target "edge": 2 location(s), fewer than cluster.quorum ' \
           '(3)' in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cluster_is_a_restart_only_key() -> None:
    running = parse_text(OFF + CLUSTER)
    new = parse_text(OFF + CLUSTER + 'location = "us"\n')
    assert needs_restart(running, new) == ["cluster"]
    assert effective(running, new).cluster == running.cluster
    assert needs_restart(running, parse_text(OFF)) == ["cluster"]
    assert needs_restart(running, running) == []
