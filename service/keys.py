"""API keys: the configured ones, or one generated into data_dir on first start.

The generated key is written with mode 0600 and only its file path is ever logged.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from core.files import private_dir


def ensure_api_keys(configured: Sequence[str], data_dir: Path,
                    filename: str) -> tuple[list[str], Path | None]:
    """The keys to accept, and the file a generated key lives in (None when configured)."""
    keys = [k for k in configured if k]
    if keys:
        return keys, None
    path = data_dir / filename
    if not path.exists():
        private_dir(data_dir)
        key = secrets.token_urlsafe(32)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
        os.replace(tmp, path)  # atomic: a crash never leaves half a key behind
    return [path.read_text(encoding="utf-8").strip()], path
