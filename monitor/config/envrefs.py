"""`env:NAME` values: resolved from the environment when the feature that needs them starts.

A missing variable is reported with the key path and the variable's name, never a value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from probes.base import SECRET, is_env_ref

T = TypeVar("T")


class SecretError(Exception):
    def __init__(self, path: str, var: str) -> None:
        super().__init__(f"{path}: environment variable {var} is not set")
        self.path, self.var = path, var


def resolve(value: str, path: str, env: Mapping[str, str]) -> str:
    if not is_env_ref(value):
        return value
    var = value[4:]
    if var not in env:
        raise SecretError(path, var)
    return env[var]


def resolve_fields(obj: T, path: str, env: Mapping[str, str]) -> T:
    """A copy of the dataclass `obj` with every secret field's env: references resolved."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(obj):  # type: ignore[arg-type]
        if not f.metadata.get(SECRET):
            continue
        value = getattr(obj, f.name)
        where = f"{path}.{f.name}" if path else f.name
        if isinstance(value, str):
            new: Any = resolve(value, where, env)
        elif isinstance(value, tuple):
            new = tuple(resolve(v, f"{where}[{i}]", env) for i, v in enumerate(value))
        elif isinstance(value, Mapping):
            new = {k: resolve(v, f"{where}.{k}", env) for k, v in value.items()}
        else:
            continue
        if new != value:
            changes[f.name] = new
    return dataclasses.replace(obj, **changes) if changes else obj  # type: ignore[type-var]
