"""API keys: the configured ones, or one generated into data_dir on first start.

The generated key is written with mode 0600 and only its file path is ever logged: "generated"
on the start that wrote it, "read from" on every later one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.files import private_dir


@dataclass(frozen=True)
class ApiKeys:
    """The keys to accept; `file` is where the generated one lives (None when keys are
    configured), `created` whether this start wrote it."""

    keys: list[str]
    file: Path | None = None
    created: bool = False

    def origin(self, what: str) -> str | None:
        """The line to log about where the key of `what` ("monitor API key") came from, or
        None when keys are configured (nothing worth saying)."""
        if self.file is None:
            return None
        if self.created:
            return f"{what}: generated, read it from {self.file}"
        return f"{what}: read from {self.file} (generated on an earlier start)"


def load_api_keys(configured: Sequence[str], data_dir: Path, filename: str) -> ApiKeys:
    """The configured keys, else the generated key in `data_dir/filename`, written on the
    first call."""
    keys = [k for k in configured if k]
    if keys:
        return ApiKeys(keys)
    path = data_dir / filename
    created = False
    if not path.exists():
        private_dir(data_dir)
        key = secrets.token_urlsafe(32)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
        os.replace(tmp, path)  # atomic: a crash never leaves half a key behind
        created = True
    return ApiKeys([path.read_text(encoding="utf-8").strip()], path, created)


def ensure_api_keys(configured: Sequence[str], data_dir: Path,
                    filename: str) -> tuple[list[str], Path | None]:
    """The keys to accept, and the file a generated key lives in (None when configured)."""
    loaded = load_api_keys(configured, data_dir, filename)
    return loaded.keys, loaded.file
