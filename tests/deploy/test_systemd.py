"""deploy/systemd: the real `systemd-analyze verify` reads both units (the template as an
instance), with ExecStart pointing at this venv's `crypitor` since /opt/crypitor is not
installed here; it only warns about unknown keys, so its output must be empty. Then the keys
that make the units what they claim: reload by SIGHUP, a stop above the drain, hardening."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.tools import ROOT, systemd_analyze

UNITS = ROOT / "deploy" / "systemd"
INSTALLED = "/opt/crypitor/bin/crypitor"
DRAIN_PLUS_TIMEOUT = 5 + 30   # CONTRACT's shutdown_drain + shutdown_timeout defaults
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
             "PrivateTmp": "yes", "CapabilityBoundingSet": "", "User": "crypitor",
             "Group": "crypitor", "KillSignal": "SIGTERM"}


def verify(tmp_path: Path, text: str, name: str) -> subprocess.CompletedProcess[str]:
    here = str(Path(sys.executable).parent / "crypitor")
    unit = tmp_path / name
    unit.write_text(text.replace(INSTALLED, here))
    return subprocess.run([systemd_analyze(), "verify", "--man=no", str(unit)],
                          capture_output=True, text=True, timeout=60)


def service_section(name: str) -> dict[str, list[str]]:
    """The [Service] keys of a unit, every value of a repeated key."""
    # not configparser: systemd repeats keys (SystemCallFilter, EnvironmentFile)
    values: dict[str, list[str]] = {}
    section = ""
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


@pytest.mark.parametrize(("name", "as_name"), [
    ("crypitor.service", "crypitor.service"),
    ("crypitor-service@.service", "crypitor-service@1.service"),
])
def test_systemd_analyze_verifies_the_units(tmp_path: Path, name: str, as_name: str) -> None:
    check = verify(tmp_path, (UNITS / name).read_text(), as_name)
    assert check.returncode == 0 and not check.stderr.strip(), check.stdout + check.stderr


def test_systemd_analyze_is_seen_to_flag_a_misspelt_key(tmp_path: Path) -> None:
    text = (UNITS / "crypitor.service").read_text().replace("NoNewPrivileges=",
                                                            "NoNewPrivilege=")
    assert "NoNewPrivilege" in verify(tmp_path, text, "crypitor.service").stderr


@pytest.mark.parametrize(("name", "command"), [
    ("crypitor.service", "run"), ("crypitor-service@.service", "service"),
])
def test_units_run_reload_stop_and_are_hardened(name: str, command: str) -> None:
    keys = service_section(name)
    (start,) = keys["ExecStart"]
    assert start.split()[:2] == [INSTALLED, command] and "-c" in start.split()
    assert keys["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert int(keys["TimeoutStopSec"][0]) > DRAIN_PLUS_TIMEOUT
    for key, value in HARDENING.items():
        assert keys.get(key) == [value], key
    (writable,) = keys["ReadWritePaths"]
    assert writable == keys["WorkingDirectory"][0]
    assert writable.startswith("/var/lib/") and keys["StateDirectory"]
    if "@" in name:
        assert "%i" in start and "%i" in writable  # one config and one data_dir per instance
