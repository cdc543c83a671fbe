"""The deployment honours the seed's facts, and every configured key means something."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from executor_worker.sandbox import SandboxSettings
from executor_worker.settings import ExecutorSettings
from llm_worker.settings import LlmSettings
from pipeline.bus.settings import BusSettings
from pipeline.settings import (
    LogSettings,
    ProcessorSettings,
    ServiceSettings,
)

K8S = Path(__file__).resolve().parents[2] / "k8s"


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def one(name: str) -> dict[str, Any]:
    (doc,) = load(name)
    return doc


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(c)


def env_names() -> set[str]:
    names: set[str] = set()
    for cls in (BusSettings, ExecutorSettings, LlmSettings, LogSettings, ProcessorSettings,
                ServiceSettings):
        for field_name, info in cls.model_fields.items():
            names.add(field_name.lower())
            alias = info.validation_alias
            names.update(str(a).lower() for a in getattr(alias, "choices", []) or [])
    names.update(f"sandbox_{n}" for n in SandboxSettings.model_fields)
    return names


def test_kustomization_lists_every_manifest_and_each_parses() -> None:
    listed = set(one("kustomization.yaml")["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    for name in on_disk:
        assert load(name), name


@pytest.mark.parametrize(
    ("name", "replicas", "port", "requests", "limits"),
    [
        ("llm-service", 3, 8000, {"cpu": "500m", "memory": "1Gi"}, {"cpu": "2", "memory": "4Gi"}),
        ("executor-service", 5, 8001, {"cpu": "1", "memory": "2Gi"}, {"cpu": "4", "memory": "8Gi"}),
    ],
)
def test_deployments_match_the_seed(name: str, replicas: int, port: int,
                                    requests: dict[str, str], limits: dict[str, str]) -> None:
    dep = one(f"{name}-deployment.yaml")
    assert dep["metadata"]["name"] == name and dep["spec"]["replicas"] == replicas
    c = container(dep)
    assert c["image"] == f"{name}:latest"
    assert c["ports"][0]["containerPort"] == port
    assert c["resources"] == {"requests": requests, "limits": limits}
    assert c["livenessProbe"]["httpGet"]["path"] == "/api/v1/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/api/v1/ready"
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    service = one(f"{name}-service.yaml")
    assert service["spec"]["type"] == "ClusterIP" and service["spec"]["ports"][0]["port"] == port


def test_hpa_matches_the_seed() -> None:
    hpa = one("executor-service-hpa.yaml")
    assert hpa["metadata"]["name"] == "executor-service-hpa"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"]
               for m in hpa["spec"]["metrics"]}
    assert targets == {"cpu": 70, "memory": 80}


def test_rbac_is_namespaced_and_minimal() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in load("executor-service-rbac.yaml")}
    role = docs[("Role", "executor-service-role")]
    assert ("RoleBinding", "executor-service-rolebinding") in docs
    assert ("ServiceAccount", "executor-service") in docs
    assert not any(kind.startswith("Cluster") for kind, _ in docs)
    verbs = {r["resources"][0]: set(r["verbs"]) for r in role["rules"]}
    assert verbs["jobs"] >= {"create", "get", "list", "watch"}
    assert verbs["pods/log"] == {"get"}


def test_every_configmap_key_is_a_setting_and_every_secret_ref_exists() -> None:
    known = env_names()
    config = one("configmap.yaml")["data"]
    assert set(config) - known == set()
    assert {"log_level", "max_retries", "execution_timeout"} <= set(config)
    secret_keys = set(one("secrets.yaml")["stringData"])
    for name in ("llm-service", "executor-service"):
        for env in container(one(f"{name}-deployment.yaml"))["env"]:
            assert env["name"].lower() in known, env["name"]
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secret_keys


def test_the_executor_never_receives_the_llm_key() -> None:
    envs = {e["name"] for e in container(one("executor-service-deployment.yaml"))["env"]}
    assert not envs & {"LLM_API_KEY", "ANTHROPIC_API_KEY"}
