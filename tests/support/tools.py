"""The real programs the tests run (from Debian's packages, installed by `make test`). A
missing one fails the test that needs it, naming the package; it never skips."""

from __future__ import annotations

import shutil

import pytest


def installed(binary: str, package: str) -> str:
    """The path of `binary`; fails the calling test when the Debian `package` is missing."""
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} not found: `make test` installs the Debian package {package!r}")
    return path


def promtool() -> str:
    return installed("promtool", "prometheus")


def prometheus() -> str:
    return installed("prometheus", "prometheus")


def haproxy() -> str:
    """Debian installs it in /usr/sbin, which a non-root PATH may lack."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    return found or installed("haproxy", "haproxy")
