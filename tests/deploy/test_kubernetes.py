"""deploy/kubernetes: the core kinds pass the real `kubernetes-validate --strict` (schemas
bundled in the PyPI package); KEDA's ScaledObject, a custom kind it has no schema for, is
checked by structure here, its queries by the real promtool. Then what a schema cannot
know: probes on our health endpoints, the grace period above the drain, the config the pods
mount passing `check-config`, secrets referenced and never inlined."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import catalog
from monitor.config import Config
from tests.deploy.configs import checked, data_dir
from tests.support.tools import ROOT, promtool, venv_tool

KUBE = ROOT / "deploy" / "kubernetes"
# CONTRACT's defaults of [service].shutdown_drain and shutdown_timeout
DRAIN_PLUS_TIMEOUT = 5 + 30
# the saturation gauge is issue 14's item 3, added to catalog/ on another branch
def documents(name: str) -> list[dict[str, Any]]:
    with (KUBE / name).open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def resources() -> list[str]:
    return [str(r) for r in documents("kustomization.yaml")[0]["resources"]]


def all_core() -> list[dict[str, Any]]:
    return [d for name in resources() for d in documents(name)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in all_core() if d["kind"] == kind]


def deployment(component: str) -> dict[str, Any]:
    (found,) = [d for d in of_kind("Deployment")
                if d["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    return found


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([venv_tool("kubernetes-validate"), "--strict", "--quiet",
                           *map(str, paths)], capture_output=True, text=True, timeout=60)


def test_every_file_is_in_the_kustomization_or_is_an_optional_addition() -> None:
    # optional: KEDA instead of hpa.yaml; a Prometheus Operator Prometheus with the retention
    # the dashboards need (tests/deploy/test_retention.py)
    files = {p.name for p in KUBE.glob("*.yaml")}
    assert files == {*resources(), "kustomization.yaml", "keda-scaledobject.yaml",
                     "prometheus-operator.yaml"}


def test_the_core_kinds_pass_kubernetes_validate_strict() -> None:
    check = validate(*(KUBE / name for name in resources()))
    assert check.returncode == 0, check.stdout + check.stderr


def test_kubernetes_validate_is_seen_to_reject_an_unknown_field(tmp_path: Path) -> None:
    bad = documents("pdb.yaml")[0]
    bad["spec"]["maxUnavailabel"] = 1
    (tmp_path / "pdb.yaml").write_text(yaml.safe_dump(bad))
    assert validate(tmp_path / "pdb.yaml").returncode != 0


def test_no_secret_is_inlined_and_every_env_reference_is_provided() -> None:
    assert not of_kind("Secret")
    (config_map,) = of_kind("ConfigMap")
    text = config_map["data"]["config.toml"]
    refs = {line.split('"env:')[1].split('"')[0] for line in text.splitlines()
            if '"env:' in line and not line.lstrip().startswith("#")}
    for component in ("service", "monitor"):
        (container,) = deployment(component)["spec"]["template"]["spec"]["containers"]
        for env in container.get("env", []):
            assert "value" not in env, env["name"]  # from a Secret, never written here
            assert "secretKeyRef" in env["valueFrom"]
        given = {env["name"] for env in container.get("env", [])}
        needed = {"CRYPITOR_API_KEY"} if component == "service" else refs
        assert needed <= given, (component, needed - given)


def mounted_config() -> Config:
    """The ConfigMap's config.toml, checked as `crypitor check-config` checks it."""
    (config_map,) = of_kind("ConfigMap")
    return checked(config_map["data"]["config.toml"], "/etc/crypitor/config.toml")


def test_the_mounted_config_passes_check_config() -> None:
    config = mounted_config()
    # [cluster] and several service processes need the monitor's embedded service off or
    # on Redis; here it is off, and the service pods share a Redis queue
    assert not config.service.enabled and config.service.queue.startswith("redis://")


@pytest.mark.parametrize("component", ["service", "monitor"])
def test_deployments_probe_drain_limit_and_run_unprivileged(component: str) -> None:
    config = mounted_config()
    d = deployment(component)
    pod = d["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in ("http", port)
    assert pod["terminationGracePeriodSeconds"] > DRAIN_PLUS_TIMEOUT
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    (config_map,) = of_kind("ConfigMap")
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_path = container["args"][container["args"].index("-c") + 1]
    config_dir = str(Path(config_path).parent)
    assert volumes[mounts[config_dir]]["configMap"]["name"] == config_map["metadata"]["name"]
    for writable in (data_dir(config_map["data"]["config.toml"]), "/tmp"):
        assert "emptyDir" in volumes[mounts[writable]]
    if component == "service":
        assert container["args"][0] == "service" and d["spec"]["replicas"] >= 2
        assert int(config.service.listen.rpartition(":")[2]) == port
    else:
        # several instances only as one [cluster]: else each would send every alert
        assert container["args"][0] == "run" and d["spec"]["replicas"] >= 2
        assert config.cluster is not None and config.cluster.quorum == 1
        assert d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 1
        assert int(config.monitor.listen.rpartition(":")[2]) == port


def pod_labels(component: str) -> dict[str, str]:
    labels: dict[str, str] = deployment(component)["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_services_pdb_and_ingress_point_at_what_exists() -> None:
    services = {s["metadata"]["name"]: s for s in of_kind("Service")}
    for name, component in (("crypitor-service", "service"), ("crypitor-monitor", "monitor")):
        assert selects(services[name]["spec"]["selector"], pod_labels(component))
        assert not selects(services[name]["spec"]["selector"],
                           pod_labels("monitor" if component == "service" else "service"))
    budgets = {p["metadata"]["labels"]["app.kubernetes.io/component"]: p
               for p in of_kind("PodDisruptionBudget")}
    assert set(budgets) == {"service", "monitor"}
    for component, pdb in budgets.items():
        assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels(component))
        assert pdb["spec"]["maxUnavailable"] == 1
    (ingress,) = of_kind("Ingress")
    assert ingress["spec"]["tls"]
    for rule in ingress["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            ports = {p["name"] for p in services[backend["name"]]["spec"]["ports"]}
            assert backend["port"]["name"] in ports


def metric_names() -> set[str]:
    return {m.name for m in catalog.ALL}


def test_the_hpa_scales_the_service_on_saturation_and_backlog() -> None:
    (hpa,) = of_kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment",
                                                deployment("service")["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2
    used = set()
    for metric in hpa["spec"]["metrics"]:
        used.add(metric[metric["type"].lower()]["metric"]["name"])
    assert "crypitor_webhook_saturation" in used
    assert used <= metric_names()


def test_the_keda_scaled_object_by_structure_and_its_queries_by_promtool(
        tmp_path: Path) -> None:
    (scaled,) = documents("keda-scaledobject.yaml")
    assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
    assert set(scaled) == {"apiVersion", "kind", "metadata", "spec"}
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == deployment("service")["metadata"]["name"]
    assert 2 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    triggers = spec["triggers"]
    assert triggers and all(t["type"] == "prometheus" for t in triggers)
    rules = []
    for i, trigger in enumerate(triggers):
        meta = trigger["metadata"]
        assert meta["serverAddress"].startswith(("http://", "https://"))
        float(meta["threshold"])  # KEDA wants a number written as a string
        assert isinstance(meta["threshold"], str)
        assert any(name in meta["query"] for name in metric_names())
        rules.append({"record": f"keda:trigger{i}", "expr": meta["query"]})
    path = tmp_path / "keda_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "keda", "rules": rules}]}))
    check = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
