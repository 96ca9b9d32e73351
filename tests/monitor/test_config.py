"""config.toml loading: defaults, the shipped file, and a table of bad configs whose errors
must name the exact key path and the bad value."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from monitor.config import (
    Config,
    ConfigError,
    SecretError,
    format_duration,
    load,
    parse,
    parse_duration,
    resolve,
    resolve_fields,
)

ROOT = Path(__file__).resolve().parents[2]


def parse_text(text: str, path: Path = Path("/tmp/config.toml")) -> Config:
    return parse(tomllib.loads(text), path)


def errors_of(text: str, path: Path = Path("/tmp/config.toml")) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_text(text, path)
    return [str(i) for i in info.value.issues]


HTTP = '[[targets]]\nname = "a"\ntype = "http"\nurl = "http://127.0.0.1:1/"\n'
ETH = '[[targets]]\nname = "e"\ntype = "ethereum"\nurl = "http://127.0.0.1:8545"\n'

BAD = [
    # (config text, expected error line)
    (HTTP + 'interval = "fast"\n',
     'targets[0].interval: must be a duration like "30s" (got "fast")'),
    (HTTP + "interval = 30\n", 'targets[0].interval: must be a duration like "30s" (got 30)'),
    (HTTP + 'interval = "10s"\ntimeout = "20s"\n',
     'targets[0].timeout: must not exceed interval (10s) (got "20s")'),
    (HTTP + HTTP, 'targets[1].name: is already used by targets[0] (got "a")'),
    (HTTP + "colour = 1\n", "targets[0].colour: unknown key"),
    ('[[targets]]\nname = "a"\ntype = "ftp"\nurl = "ftp://x/"\n',
     'targets[0].type: must be one of http, tcp, ethereum, eos, xrpl, bitcoin, webhook_canary'
     ' (got "ftp")'),
    ('[[targets]]\nname = "a"\ntype = "http"\n', "targets[0].url: is required"),
    ('[[targets]]\ntype = "http"\nurl = "http://x/"\n', "targets[0].name: is required"),
    ('[[targets]]\nname = "a"\ntype = "http"\nurl = "ftp://x/"\n',
     'targets[0].url: must be a http:// or https:// URL with a host (got "ftp://x/")'),
    ('[[targets]]\nname = "a"\ntype = "tcp"\nurl = "tcp://x"\n',
     'targets[0].url: must name a port, like tcp://host:5432 (got "tcp://x")'),
    (HTTP + "expect_status = 200\n", "targets[0].expect_status: must be a list (got 200)"),
    (HTTP + 'expect_status = ["ok"]\n',
     'targets[0].expect_status[0]: must be a whole number (got "ok")'),
    (HTTP + 'labels = { job = "x" }\n', "targets[0].labels.job: is reserved"),
    (HTTP + 'labels = { "bad-name" = "x" }\n',
     "targets[0].labels.bad-name: is not a valid Prometheus label name"),
    (HTTP + "labels = { team = 1 }\n", "targets[0].labels.team: must be a string (got 1)"),
    (HTTP + 'method = "env:METHOD"\n', "targets[0].method: does not read env: values"),
    (HTTP + 'max_lag_blocks = 3\n', "targets[0].max_lag_blocks: unknown key"),
    (ETH + 'reference = "nope"\n',
     'targets[0].reference: must name another target or be an http(s) URL (got "nope")'),
    (ETH + 'reference = "e"\n', 'targets[0].reference: must not name the target itself'),
    (HTTP + ETH + 'reference = "a"\n',
     'targets[1].reference: names a http target; it must be ethereum (got "a")'),
    (ETH + 'max_head_age = "soon"\n',
     'targets[0].max_head_age: must be a duration like "30s" (got "soon")'),
    (ETH + 'chain_id = "1"\n', 'targets[0].chain_id: must be a whole number (got "1")'),
    ('[monitor]\nlisten = "9300"\n', 'monitor.listen: must be "host:port" (got "9300")'),
    ('[monitor]\nport = 1\n', "monitor.port: unknown key"),
    ('[nonsense]\n', "nonsense: unknown section"),
    ('[service]\nqueue = "kafka"\n',
     'service.queue: must be "sqlite", a redis:// or a redis+sentinel:// URL (got "kafka")'),
    ('[service]\nretry_schedule = ["5s", "often"]\n',
     'service.retry_schedule[1]: must be a duration like "30s" (got "often")'),
    ('[service]\nallowed_networks = ["10.0.0.0/33"]\n',
     'service.allowed_networks[0]: must be a CIDR like "10.0.0.0/8" (got "10.0.0.0/33")'),
    ('[service.chains.eth]\nconfirmations = -1\n',
     "service.chains.eth.confirmations: must be 0 or more (got -1)"),
    ('[service.chains.eth]\nrpc = "x"\n', "service.chains.eth.rpc: unknown key"),
    # issue 13: a node's answer is read up to this many bytes
    ('[service.chains.eth]\nmax_response_bytes = 1000\n',
     "service.chains.eth.max_response_bytes: must be from 65536 to 1073741824 (got 1000)"),
    ('[service.chains.eth]\nmax_response_bytes = 2000000000\n',
     "service.chains.eth.max_response_bytes: must be from 65536 to 1073741824 "
     "(got 2000000000)"),
    ('[service.chains.eth]\nmax_response_bytes = "16MB"\n',
     'service.chains.eth.max_response_bytes: must be a whole number (got "16MB")'),
    ('[service]\napi_keys = [12345]\n', "service.api_keys[0]: must be a string (got a int)"),
    ('[alerts]\ndisable_builtin = ["Nope"]\n', "alerts.disable_builtin[0]: is not a built-in"),
    ('[[alerts.rules]]\nname = "R"\ncondition = "peers < 1"\nseverity = "loud"\n',
     'alerts.rules[0].severity: must be one of critical, warning, info (got "loud")'),
    ('[[alerts.rules]]\nname = "R"\ncondition = "peers < 1"\nfor = "ever"\n',
     'alerts.rules[0].for: must be a duration like "30s" (got "ever")'),
    ('[[alerts.rules]]\nname = "R"\n', "alerts.rules[0].condition: is required"),
    ('[[alerts.rules]]\nname = "R"\ncondition = "block_lag > 5)"\n',
     "alerts.rules[0].condition: unbalanced ')': nothing to close at position 13: "
     'block_lag > 5>>>) (got "block_lag > 5)")'),
    ('[[alerts.rules]]\nname = "R"\ncondition = "blok_lag > 5"\n',
     "alerts.rules[0].condition: unknown value name 'blok_lag'; did you mean 'block_lag'?"),
    ('[[alerts.rules]]\nname = "R"\ncondition = "failure_reason > 2"\n',
     "alerts.rules[0].condition: > needs numbers, but failure_reason is a string at "
     "position 0: >>>failure_reason > 2"),
    ('[[alerts.rules]]\nname = "R"\ncondition = "peers < 1"\nsummary = "{target is down"\n',
     "alerts.rules[0].summary: stray '{' at position 0"),
    ('[alerts.route]\nreceiver = "pager"\n',
     'alerts.route.receiver: names no [[alerts.receivers]] entry (got "pager")'),
    ('[[alerts.receivers]]\nname = "a"\ntype = "slack"\n',
     'alerts.receivers[0].type: must be one of telegram, webhook (got "slack")'),
    ('[[alerts.maintenance]]\nname = "m"\nstart = "25:00"\n',
     'alerts.maintenance[0].start: must be "HH:MM" or a date like "2026-12-01T02:00" '
     '(got "25:00")'),
    ('[[alerts.maintenance]]\nname = "m"\nstart = "02:00"\nevery = ["someday"]\n',
     'alerts.maintenance[0].every[0]: must be a weekday like "sunday" (got "someday")'),
    ('[[alerts.maintenance]]\nname = "m"\nstart = "02:00"\ntimezone = "Mars/Olympus"\n',
     "alerts.maintenance[0].timezone: must be an IANA time zone"),
    ('[gcp]\nproject_id = "p"\ninterval = "1s"\n', "gcp.interval: must be at least 10s"),
    ('[grafana]\nfolder = 3\n', "grafana.folder: must be a string (got 3)"),
    # issue 12: what check-config accepted and `run` could not start with
    ('[service]\nallowed_networks = ["10.0.0.1/8"]\n',
     'service.allowed_networks[0]: has host bits set; write "10.0.0.0/8" for the network '
     '(got "10.0.0.1/8")'),
    ('[service]\nqueue = "redis://:::::/x"\n',
     "service.queue: is not a usable redis:// URL: Port could not be cast to integer value "
     """as '::::' (got "redis://:::::/x")"""),
    ('[service]\nqueue = "redis://127.0.0.1:6379/x"\n',
     "service.queue: is not a usable redis:// URL: the path must be a database number like "
     '/0 (got "redis://127.0.0.1:6379/x")'),
    ('[service]\nqueue = "redis://127.0.0.1:6379/0?colour=red"\n',
     "service.queue: is not a usable redis:// URL: AbstractConnection.__init__() got an "
     "unexpected keyword argument 'colour'"),
    (HTTP + 'interval = "100000000000000000000d"\n',
     'targets[0].interval: must be at most 3650d (got "100000000000000000000d")'),
    ('[service]\ndisable_after = "99999999999d"\n',
     'service.disable_after: must be at most 3650d (got "99999999999d")'),
    ('[service]\nmax_in_flight_per_endpoint = 100000000000000000000\n',
     "service.max_in_flight_per_endpoint: must be a whole number within 64 bits "
     "(got 100000000000000000000)"),
    ('[[targets]]\nname = "x"\ntype = "xrpl"\nurl = "http://127.0.0.1:1"\n'
     "max_load_factor = nan\n", "targets[0].max_load_factor: must be a finite number "
     "(got NaN)"),
    ('[monitor]\ndata_dir = "config.toml"\n',
     'monitor.data_dir: names a file, not a directory (got "config.toml")'),
    ('[monitor]\ndata_dir = "config.toml/data"\n',
     'monitor.data_dir: cannot be created: /tmp/x/config.toml is a file '
     '(got "config.toml/data")'),
    ('[monitor]\nlisten = "monitor.example:9300"\n',
     'monitor.listen: must be an IP address or "localhost" with a port, like "0.0.0.0:9300" '
     '(got "monitor.example:9300")'),
    ('[[alerts.receivers]]\nname = "a"\napi_url = "http://"\n',
     'alerts.receivers[0].api_url: must be an http:// or https:// URL with a host '
     '(got "http://")'),
    ('[grafana]\nurl = "ftp://x"\n',
     'grafana.url: must be an http:// or https:// URL with a host (got "ftp://x")'),
    ('[grafana]\nprometheus_url = "http://"\n',
     'grafana.prometheus_url: must be an http:// or https:// URL with a host (got "http://")'),
    ('[[alerts.rules]]\nname = "R"\ncondition = "' + "(" * 5000 + "peers < 1" + ")" * 5000
     + '"\n', "alerts.rules[0].condition: nested too deeply (more than 50 levels of "
     "parentheses and `not`) at position 50 (got \"(((((((((("),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[e[:100] for _, e in BAD])
def test_bad_config_names_key_and_value(text: str, expected: str, tmp_path: Path) -> None:
    # a config file that exists, for the data_dir rows; error lines name it as /tmp/x
    (tmp_path / "config.toml").write_text(text)
    errors = [e.replace(str(tmp_path), "/tmp/x")
              for e in errors_of(text, tmp_path / "config.toml")]
    assert any(e.startswith(expected) for e in errors), errors


def test_every_error_is_reported_not_just_the_first() -> None:
    text = HTTP + 'interval = "fast"\ncolour = 1\n[monitor]\nlisten = "nope"\n'
    errors = errors_of(text)
    assert len(errors) == 3, errors


def test_secret_values_never_appear_in_errors() -> None:
    errors = errors_of('[service]\napi_keys = "hunter2-secret"\n')
    assert errors and all("hunter2" not in e for e in errors)


def test_empty_config_is_valid_with_defaults() -> None:
    cfg = parse_text("")
    assert cfg.targets == ()
    assert cfg.monitor.listen == "127.0.0.1:9300"
    assert cfg.monitor.default_interval == 30.0
    assert cfg.service.retry_schedule == (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0,
                                          36000.0)
    assert cfg.service.disable_after == 5 * 86400
    assert cfg.grafana is None and cfg.gcp is None


def test_chain_answer_limit_defaults_to_16_mib() -> None:
    cfg = parse_text('[service.chains.a]\n[service.chains.b]\nmax_response_bytes = 65536\n')
    limits = {name: c.max_response_bytes for name, c in cfg.service.chains.items()}
    assert limits == {"a": 16 * 1024 * 1024, "b": 65536}


def test_target_defaults_and_timeout_clamped_to_interval() -> None:
    cfg = parse_text('[monitor]\ndefault_timeout = "10s"\n' + HTTP + 'interval = "5s"\n')
    (t,) = cfg.targets
    assert (t.interval, t.timeout) == (5.0, 5.0)
    assert t.options.expect_status == ()


def test_reference_to_target_and_url_accepted() -> None:
    text = ETH + '[[targets]]\nname = "f"\ntype = "ethereum"\nurl = "http://127.0.0.1:1"\n' \
        'reference = "e"\n' + '[[targets]]\nname = "g"\ntype = "ethereum"\n' \
        'url = "http://127.0.0.1:2"\nreference = "https://rpc.example/"\n'
    text += '[[targets]]\nname = "h"\ntype = "ethereum"\nurl = "http://127.0.0.1:3"\n' \
        'reference = "env:REF_URL"\n'
    cfg = parse_text(text)
    assert [t.options.reference for t in cfg.targets] == ["", "e", "https://rpc.example/",
                                                          "env:REF_URL"]
    resolved = resolve_fields(cfg.targets[3].options, "targets[3]",
                              {"REF_URL": "https://key@rpc.example/v3/KEY"})
    assert resolved.reference == "https://key@rpc.example/v3/KEY"


def test_env_values_resolve_late_and_name_key_and_variable() -> None:
    cfg = parse_text('[[targets]]\nname = "b"\ntype = "bitcoin"\nurl = "env:BTC_URL"\n'
                     'rpc_user = "monitor"\nrpc_password = "env:BTC_PASS"\n')
    (t,) = cfg.targets
    assert t.url == "env:BTC_URL"
    assert resolve(t.url, "targets[0].url", {"BTC_URL": "http://127.0.0.1:8332"}) == \
        "http://127.0.0.1:8332"
    with pytest.raises(SecretError) as info:
        resolve_fields(t.options, "targets[0]", {})
    assert str(info.value) == "targets[0].rpc_password: environment variable BTC_PASS is not set"
    resolved = resolve_fields(t.options, "targets[0]", {"BTC_PASS": "s3cret"})
    assert resolved.rpc_password == "s3cret"


def test_durations_round_trip() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1h30m") == 5400
    assert parse_duration("5d") == 432000
    for bad in ("", "5", "5 s", "-5s", "5w"):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert format_duration(5400) == "90m"
    assert format_duration(0.25) == "250ms"


def test_shipped_config_passes_with_empty_environment() -> None:
    cfg = load(ROOT / "config.toml")
    assert len(cfg.targets) >= 4
    proc = subprocess.run([sys.executable, "-m", "monitor", "check-config", "-c",
                           str(ROOT / "config.toml")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout


def test_check_config_prints_every_error_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(HTTP + 'interval = "fast"\n[monitor]\nlisten = "x"\n')
    proc = subprocess.run([sys.executable, "-m", "monitor", "check-config", "-c", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert 'targets[0].interval: must be a duration like "30s" (got "fast")' in proc.stderr
    assert 'monitor.listen: must be "host:port" (got "x")' in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_config_on_missing_and_broken_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[targets\n")
    for path in (tmp_path / "missing.toml", broken):
        proc = subprocess.run([sys.executable, "-m", "monitor", "check-config", "-c",
                               str(path)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert str(path) in proc.stderr and "Traceback" not in proc.stderr


def test_check_config_refuses_deep_condition_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[alerts.rules]]\nname = "R"\ncondition = "' + "(" * 5000 + "peers < 1"
                   + ")" * 5000 + '"\n[monitor]\ndata_dir = "bad.toml"\n')
    proc = subprocess.run([sys.executable, "-m", "monitor", "check-config", "-c", str(bad)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "alerts.rules[0].condition: nested too deeply" in proc.stderr
    assert 'monitor.data_dir: names a file, not a directory (got "bad.toml")' in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr) < 2000


def test_allowed_network_accepted_is_the_one_the_guard_reads() -> None:
    from service.delivery.ssrf import Guard

    cfg = parse_text('[service]\nallowed_networks = ["10.0.0.0/8", "192.168.1.7", "fd00::/8"]\n')
    Guard(False, cfg.service.allowed_networks)  # raised ValueError at start before
