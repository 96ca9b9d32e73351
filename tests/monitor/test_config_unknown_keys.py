"""An unknown key in a target names every key allowed there: the keys every target has
(`name`, `type`, `interval` …) as well as those of its type, whatever the type."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from monitor.config import ConfigError, parse
from monitor.config.targets import COMMON
from probes.registry import TYPES


@pytest.mark.parametrize("kind", sorted(TYPES))
def test_an_unknown_target_key_lists_the_common_and_the_type_keys(
        tmp_path: Path, kind: str) -> None:
    text = f'[[targets]]\nname = "t"\ntype = "{kind}"\nurl = "http://127.0.0.1:1"\n' \
        'intervl = "5s"\n'
    with pytest.raises(ConfigError) as info:
        parse(tomllib.loads(text), tmp_path / "config.toml")
    (issue,) = [str(i) for i in info.value.issues if "intervl" in str(i)]
    prefix = "targets[0].intervl: unknown key (allowed here: "
    assert issue.startswith(prefix) and issue.endswith(")"), issue
    listed = issue.removeprefix(prefix).removesuffix(")").split(", ")
    assert listed == sorted(listed)
    own = {f.metadata.get("key", f.name) for f in dataclasses.fields(TYPES[kind].options)
           if f.init}
    assert set(listed) == COMMON | own, issue
    assert {"name", "type", "url", "interval", "timeout", "labels", "locations"} <= set(listed)
