"""deploy/compose.yaml, the stack on one machine: it parses and every file it mounts exists;
its Prometheus config passes the real `promtool check config` (rule files included), its
Alertmanager config the real `amtool check-config`; the generated rules and dashboards are
what the code writes today; and the parts point at each other (hosts, ports, paths)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from monitor.config import Config
from tests.deploy.configs import checked, data_dir
from tests.deploy.generated import COMPOSE_CONFIG, GRAFANA_DASHBOARDS, expected_files
from tests.support.tools import ROOT, amtool, promtool

DEPLOY = ROOT / "deploy"
DRAIN_PLUS_TIMEOUT = 5 + 30   # CONTRACT's shutdown_drain + shutdown_timeout defaults


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def binds(service: dict[str, Any]) -> dict[str, Path]:
    """Container path → the file or folder of the repository mounted there."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            out[target] = (DEPLOY / source).resolve()
    return out


def crypitor_config() -> Config:
    return checked((ROOT / COMPOSE_CONFIG).read_text(), COMPOSE_CONFIG)


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_every_mounted_file_and_the_build_exist() -> None:
    for name, service in services().items():
        for target, source in binds(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target})"
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file()
    for name, service in services().items():
        for entry in service.get("volumes", []):
            source = entry.split(":")[0]
            assert source.startswith(".") or source in compose()["volumes"], (name, source)


def test_the_monitor_and_two_service_replicas_share_redis() -> None:
    s = services()
    config = crypitor_config()
    assert s["monitor"]["command"][0] == "run"
    replicas = [n for n, svc in s.items() if svc.get("command", [""])[0] == "service"]
    assert len(replicas) == 2
    for name in ["monitor", *replicas]:
        assert binds(s[name])["/etc/crypitor/config.toml"] == ROOT / COMPOSE_CONFIG
        assert s[name]["read_only"] is True
        assert float(s[name]["stop_grace_period"].rstrip("s")) > DRAIN_PLUS_TIMEOUT
        inside = data_dir((ROOT / COMPOSE_CONFIG).read_text())
        data = [v for v in s[name]["volumes"] if v.split(":")[1] == inside]
        assert data, f"{name}: no volume at data_dir"
    assert not config.service.enabled
    assert urlsplit(config.service.queue).hostname in s
    redis = " ".join(s["redis"]["command"])
    for setting in ("--appendonly yes", "--appendfsync always", "--maxmemory-policy noeviction"):
        assert setting in redis
    for target in config.targets:
        assert urlsplit(target.url).hostname in replicas


def test_prometheus_config_passes_promtool_and_scrapes_the_stack() -> None:
    (prom_file,) = [src for dst, src in binds(services()["prometheus"]).items()
                    if dst.endswith("prometheus.yml")]
    check = run(promtool(), "check", "config", str(prom_file))
    assert check.returncode == 0, check.stdout + check.stderr
    prom = yaml.safe_load(prom_file.read_text())
    mounted = {Path(dst).name for dst in binds(services()["prometheus"])}
    assert set(prom["rule_files"]) <= mounted
    scraped = {t for job in prom["scrape_configs"] for sc in job["static_configs"]
               for t in sc["targets"]}
    config = crypitor_config()
    port = {"monitor": config.monitor.listen.rpartition(":")[2],
            "service": config.service.listen.rpartition(":")[2]}
    expected = {f"monitor:{port['monitor']}"} | {
        f"{n}:{port['service']}" for n, svc in services().items()
        if svc.get("command", [""])[0] == "service"}
    assert scraped == expected
    (am,) = [t for a in prom["alerting"]["alertmanagers"] for sc in a["static_configs"]
             for t in sc["targets"]]
    assert am.split(":")[0] in services()


def test_alertmanager_config_passes_amtool_and_posts_to_our_bridge() -> None:
    (am_file,) = binds(services()["alertmanager"]).values()
    check = run(amtool(), "check-config", str(am_file))
    assert check.returncode == 0, check.stdout + check.stderr
    am = yaml.safe_load(am_file.read_text())
    hooks = [h for r in am["receivers"] for h in r.get("webhook_configs", [])]
    assert hooks
    port = crypitor_config().monitor.listen.rpartition(":")[2]
    for hook in hooks:
        url = urlsplit(hook["url"])
        assert (url.hostname, str(url.port), url.path) == ("monitor", port,
                                                          "/api/v1/alertmanager")
        credentials = hook["http_config"]["authorization"]["credentials_file"]
        secret = Path(credentials).name
        assert secret in services()["alertmanager"]["secrets"]
        assert secret in compose()["secrets"]


def test_amtool_is_seen_to_reject_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "alertmanager.yml"
    bad.write_text("route:\n  receiver: nobody\nreceivers:\n  - name: somebody\n")
    assert run(amtool(), "check-config", str(bad)).returncode != 0


def test_generated_rules_and_dashboards_are_up_to_date() -> None:
    stale = [rel for rel, text in expected_files().items()
             if not (ROOT / rel).is_file() or (ROOT / rel).read_text() != text]
    assert not stale, f"out of date (run `make deploy-files`): {stale}"
    written = {str(p.relative_to(ROOT)) for p in (DEPLOY / "grafana").rglob("*") if p.is_file()}
    assert written == {rel for rel in expected_files() if rel.startswith("deploy/grafana/")}


def test_grafana_is_provisioned_from_the_export() -> None:
    mounts = binds(services()["grafana"])
    assert mounts[str(GRAFANA_DASHBOARDS)] == DEPLOY / "grafana" / "dashboards"
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/crypitor.yaml")
                              .read_text())
    assert provider["providers"][0]["options"]["path"] == str(GRAFANA_DASHBOARDS)
    source = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/crypitor.yaml")
                            .read_text())
    assert urlsplit(source["datasources"][0]["url"]).hostname in services()
    for board in (DEPLOY / "grafana" / "dashboards").glob("*.json"):
        assert "crypitor" in json.loads(board.read_text())["tags"]


def test_tls_terminates_at_the_proxy() -> None:
    proxy = services()["proxy"]
    assert "443:443" in proxy["ports"]
    published = {n for n, svc in services().items() if svc.get("ports")}
    assert published == {"proxy"}
    caddyfile = binds(proxy)["/etc/caddy/Caddyfile"].read_text()
    for upstream in ("service-1:8080", "service-2:8080"):
        assert upstream in caddyfile
    assert "health_uri /readyz" in caddyfile
