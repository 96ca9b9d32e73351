"""The kit's config files checked as `crypitor check-config` checks them, on any machine: their
`data_dir` is a path inside the container or the unit (`/var/lib/...`), which a developer's
or CI's unprivileged user cannot create, so it is checked to be absolute and then pointed at
a scratch path for the rest of the checks."""

from __future__ import annotations

import tempfile
import tomllib
from pathlib import Path

from monitor.config import Config, parse


def data_dir(text: str) -> str:
    """The `[monitor] data_dir` a config.toml sets (the default when it sets none)."""
    value: str = tomllib.loads(text).get("monitor", {}).get("data_dir", "data")
    return value


def checked(text: str, name: str) -> Config:
    """`text` (a config.toml read from `name`) parsed and validated; raises ConfigError."""
    raw = tomllib.loads(text)
    assert Path(data_dir(text)).is_absolute(), f"{name}: data_dir is not absolute"
    # never created: the check only needs its nearest existing parent to be writable
    raw["monitor"]["data_dir"] = str(Path(tempfile.gettempdir()) / "crypitor-deploy" / "data")
    return parse(raw, Path(name))
