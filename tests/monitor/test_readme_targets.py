"""The README names targets as they are: every `crypitor probe NAME` it shows and every
target it lists from the shipped config exists there, and `webhook-service` (the subject
of the embedded service's built-in alerts) is shown as what it is, not as a target."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from monitor.alerting_setup import SERVICE_TARGET
from tests.support.tools import ROOT

README = (ROOT / "README.md").read_text()
SHIPPED = {t["name"] for t in tomllib.loads((ROOT / "config.toml").read_text())["targets"]}


def test_every_probe_example_and_listed_shipped_target_exists() -> None:
    examples = set(re.findall(r"crypitor probe ([a-z][a-z0-9-]*)", README))
    assert examples and examples <= SHIPPED, examples - SHIPPED
    listed = re.search(r"the shipped `config.toml` has\s+(.*?)\s+so", README, re.S)
    assert listed is not None
    names = set(re.findall(r"`([a-z][a-z0-9-]+)`", listed.group(1)))
    assert names and names <= SHIPPED, names - SHIPPED


def test_webhook_service_is_an_alert_subject_not_a_target() -> None:
    assert SERVICE_TARGET == "webhook-service" and SERVICE_TARGET not in SHIPPED
    paragraph = next(p for p in README.split("\n\n") if SERVICE_TARGET in p)
    flat = " ".join(paragraph.split())
    assert "not a `[[targets]]` entry" in flat and "alert subjects only" in flat
    assert "`crypitor probe` does not know them" in flat
    assert "as the target `webhook-service`" not in flat
    # and that is what the command says
    proc = subprocess.run([sys.executable, "-m", "monitor", "probe", SERVICE_TARGET, "-c",
                           str(ROOT / "config.toml")], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "no target named 'webhook-service'" in proc.stderr
