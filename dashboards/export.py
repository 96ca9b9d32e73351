"""`crypitor dashboards export`: the dashboards as JSON files plus the Grafana provisioning
files that load them, ready for Grafana's `provisioning/` directory:

    OUT/dashboards/<uid>.json
    OUT/provisioning/dashboards/crypitor.yaml    (a file provider reading OUT/dashboards)
    OUT/provisioning/datasources/crypitor.yaml   (the Prometheus datasource, uid
                                                  crypitor-prometheus)

The YAML is written by PyYAML, which quotes what needs quoting, so no value (a URL with `#`
or `: `, a folder named `yes`) can change the document's structure.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import yaml

from dashboards.build import DEFAULT_PROMETHEUS_URL, all_dashboards
from dashboards.common import PROVISIONED_DATASOURCE_NAME, PROVISIONED_DATASOURCE_UID, TAG

DEFAULT_FOLDER = "Crypitor"
PROVIDER_NAME = TAG
FOLDER_UID = TAG
SCRAPE_INTERVAL = "15s"  # Grafana's minimum step for the datasource; our example config's


def dashboards_provider_yaml(dashboards_path: Path, folder: str = DEFAULT_FOLDER) -> str:
    """A file dashboards provider loading every JSON file of `dashboards_path` into
    `folder`. Grafana reads the path on its own machine: it is written absolute."""
    provider = {
        "name": PROVIDER_NAME, "orgId": 1, "folder": folder, "folderUid": FOLDER_UID,
        "type": "file", "disableDeletion": False, "allowUiUpdates": False,
        "updateIntervalSeconds": 30,
        "options": {"path": str(dashboards_path), "foldersFromFilesStructure": False},
    }
    return _yaml("Written by `crypitor dashboards export`; Grafana loads the dashboards from "
                 "`path`.", {"apiVersion": 1, "providers": [provider]})


def datasource_yaml(prometheus_url: str) -> str:
    """The Prometheus datasource the dashboards select by default."""
    source = {
        "name": PROVISIONED_DATASOURCE_NAME, "uid": PROVISIONED_DATASOURCE_UID,
        "type": "prometheus", "access": "proxy", "url": prometheus_url, "isDefault": False,
        "editable": True, "jsonData": {"timeInterval": SCRAPE_INTERVAL},
    }
    return _yaml("Written by `crypitor dashboards export`: the Prometheus that scrapes "
                 "Crypitor.", {"apiVersion": 1, "datasources": [source]})


def _yaml(comment: str, document: dict[str, object]) -> str:
    return f"# {comment}\n" + yaml.safe_dump(document, sort_keys=False, width=math.inf)


def _write(path: Path, text: str) -> Path:
    # Grafana polls the directory: it must never read a half-written file, and it only
    # picks up *.json / *.yaml, so the temporary name is invisible to it
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def export(out_dir: Path, prometheus_url: str = DEFAULT_PROMETHEUS_URL,
           folder: str = DEFAULT_FOLDER) -> list[Path]:
    """Writes the dashboards and the provisioning files under `out_dir` (created if
    missing) and returns the paths written. Raises OSError when a file cannot be written."""
    out_dir = Path(out_dir).resolve()
    board_dir = out_dir / "dashboards"
    written = [_write(board_dir / f"{board['uid']}.json",
                      json.dumps(board, indent=2, ensure_ascii=False) + "\n")
               for board in all_dashboards(prometheus_url)]
    provisioning = out_dir / "provisioning"
    written.append(_write(provisioning / "dashboards" / f"{TAG}.yaml",
                          dashboards_provider_yaml(board_dir, folder)))
    written.append(_write(provisioning / "datasources" / f"{TAG}.yaml",
                          datasource_yaml(prometheus_url)))
    return written


def export_command(out: str, prometheus_url: str = DEFAULT_PROMETHEUS_URL,
                   folder: str = DEFAULT_FOLDER) -> int:
    """`crypitor dashboards export --out DIR`. The caller reads `[grafana].prometheus_url`
    and `[grafana].folder` from the config (dashboards/ does not import the config) and
    passes them, or leaves the defaults when the section is absent. Prints each file
    written; returns 0, or 1 when a file cannot be written (the message says which)."""
    try:
        paths = export(Path(out), prometheus_url, folder)
    except OSError as exc:
        where = exc.filename or out
        print(f"cannot write {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0
