"""The Dockerfile and .dockerignore: linted by the real hadolint (no container engine runs
here, so the image is linted, not built), and read for what hadolint cannot know: the
stages, the user, the ports of our defaults, the packages copied."""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
import tomllib
from pathlib import Path

from monitor.config import MonitorSection, ServiceSection
from tests.support.tools import ROOT, venv_tool


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([venv_tool("hadolint"), "--no-color", "--failure-threshold",
                           "warning", str(dockerfile)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_dockerfile_is_hadolint_clean_at_warning_level() -> None:
    check = hadolint(ROOT / "Dockerfile")
    assert check.returncode == 0, check.stdout + check.stderr


def test_hadolint_is_seen_to_fail_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    check = hadolint(bad)
    assert check.returncode != 0
    assert "DL3007" in check.stdout  # the `latest` tag


def test_multi_stage_slim_non_root_with_our_ports_and_entry_point() -> None:
    ins = instructions()
    froms = [args for word, args in ins if word == "FROM"]
    assert len(froms) == 2 and " AS builder" in froms[0]
    assert all(f.startswith("python:3.11-slim") for f in froms)
    runtime = ins[[i for i, (w, _) in enumerate(ins) if w == "FROM"][1]:]
    users = [args for word, args in runtime if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    exposed = {int(p) for word, args in runtime if word == "EXPOSE" for p in args.split()}
    defaults = {int(MonitorSection().listen.rpartition(":")[2]),
                int(ServiceSection().listen.rpartition(":")[2])}
    assert exposed == defaults
    entry = [json.loads(args) for word, args in runtime if word == "ENTRYPOINT"]
    assert entry == [["crypitor"]]
    assert any(word == "COPY" and args.startswith("--from=builder") for word, args in runtime)


def test_every_package_is_copied_and_passes_the_dockerignore() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"][
        "include"]}
    sources = [source.rstrip("/") for word, args in instructions()
               if word == "COPY" and not args.startswith("--") for source in args.split()[:-1]]
    assert packages <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
        assert sent_to_the_build(source), f"{source} is excluded by .dockerignore"
    assert not sent_to_the_build("node_modules") and not sent_to_the_build(".venv")


def sent_to_the_build(path: str) -> bool:
    """Whether .dockerignore lets `path` into the build context (last matching line wins)."""
    sent = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            sent = keep
    return sent
