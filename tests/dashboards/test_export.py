"""`crypitor dashboards export`: the dashboards as JSON files and the Grafana provisioning
YAML that loads them, read back as Grafana would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dashboards.build import UIDS, all_dashboards
from dashboards.common import PROVISIONED_DATASOURCE_UID
from dashboards.export import (
    dashboards_provider_yaml,
    datasource_yaml,
    export,
    export_command,
)


def test_export_writes_dashboards_and_provisioning(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    url = 'http://prom.example:9090/sub path?a=b#c: "quoted"'
    written = export(tmp_path / "out", url, folder="yes")
    out = (tmp_path / "out").resolve()
    assert {p.relative_to(out).as_posix() for p in written} == {
        *(f"dashboards/{uid}.json" for uid in UIDS),
        "provisioning/dashboards/crypitor.yaml", "provisioning/datasources/crypitor.yaml"}
    assert [json.loads((out / "dashboards" / f"{b['uid']}.json").read_text())
            for b in all_dashboards(url)] == all_dashboards(url)
    assert not list(out.rglob("*.tmp"))

    provider = yaml.safe_load((out / "provisioning/dashboards/crypitor.yaml").read_text())
    assert provider["apiVersion"] == 1
    [p] = provider["providers"]
    assert p["type"] == "file" and p["folder"] == "yes" and p["name"] == "crypitor"
    assert p["options"]["path"] == str(out / "dashboards")
    assert p["disableDeletion"] is False and p["orgId"] == 1

    sources = yaml.safe_load((out / "provisioning/datasources/crypitor.yaml").read_text())
    assert sources["apiVersion"] == 1
    [ds] = sources["datasources"]
    assert ds == {"name": "Crypitor Prometheus", "uid": PROVISIONED_DATASOURCE_UID,
                  "type": "prometheus", "access": "proxy", "url": url, "isDefault": False,
                  "editable": True, "jsonData": {"timeInterval": "15s"}}

    assert export_command(str(tmp_path / "cmd")) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 6 and all(Path(p).exists() for p in printed)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert export_command(str(blocker)) == 1
    assert "cannot write" in capsys.readouterr().err


def test_provisioning_yaml_keeps_awkward_values_strings() -> None:
    # values YAML could read as another type, or that could end a scalar or open a structure
    for value in ("yes", "null", "~", "", "1e3", "0o17", "#c", "a: b", "- x", "[x]", "{x}",
                  "'q'", '"q"', "é 😀", "line\nbreak", " padded "):
        path = Path("/d") / value
        [provider] = yaml.safe_load(dashboards_provider_yaml(path, value))["providers"]
        assert (provider["folder"], provider["options"]["path"]) == (value, str(path))
        [source] = yaml.safe_load(datasource_yaml(value))["datasources"]
        assert source["url"] == value
