"""Every manifest validates strictly against the official schema of each supported minor.

What is checked: the kustomize output of k8s/ (rendered by tests/unit/kustomize.py, and
compared with ``kubectl kustomize`` / ``kustomize build`` where one is installed), the Job
template as written, and the Job and ConfigMap the runner renders for each minor. The KEDA
objects are custom resources, absent from the official schemas: they are checked against our
own minimal schema of the fields KEDA documents (keda.sh/docs, ScaledObject and
TriggerAuthentication specs; the azure-eventhub scaler's metadata), not against KEDA's CRD.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from executor_worker.heavy.render import DEFAULT_TEMPLATE, render_configmap, render_job
from executor_worker.results import sandbox_job
from tests.fakes import kube_schema
from tests.heavy.conftest import command, heavy_settings
from tests.unit.kustomize import build

K8S = Path(__file__).resolve().parents[2] / "k8s"
MINORS = kube_schema.SUPPORTED_MINORS


def kustomize_binary() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def test_supported_minors_start_at_125_and_are_all_shipped() -> None:
    assert MINORS[0] == 25 and list(range(25, MINORS[-1] + 1)) == MINORS
    assert MINORS[-1] >= 37  # kubernetes-validate 1.37 ships up to 1.37


def test_python_kustomize_equals_the_real_one_where_installed() -> None:
    binary = kustomize_binary()
    if binary is None:
        pytest.skip("neither kustomize nor kubectl installed: the Python rendering is used")
    out = subprocess.run([*binary, str(K8S)], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    real = [d for d in yaml.safe_load_all(out) if d]
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(build(K8S), key=key) == sorted(real, key=key)


WORKLOAD_IDENTITY = K8S / "workload-identity"


def test_python_kustomize_equals_the_real_one_with_the_workload_identity_component() -> None:
    binary = kustomize_binary()
    if binary is None:
        pytest.skip("neither kustomize nor kubectl installed: the Python rendering is used")
    # An overlay beside k8s/, as the component's comment tells users to write it (kustomize
    # refuses absolute paths and an overlay inside the base).
    overlay = K8S.parent / f".kustomize-test-{os.getpid()}"
    overlay.mkdir()
    try:
        (overlay / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            "resources: [../k8s]\ncomponents: [../k8s/workload-identity]\n")
        out = subprocess.run([*binary, str(overlay)], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    finally:
        shutil.rmtree(overlay)
    real = [d for d in yaml.safe_load_all(out) if d]
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(build(K8S, (WORKLOAD_IDENTITY,)), key=key) == sorted(real, key=key)


@pytest.mark.parametrize("minor", MINORS)
def test_the_workload_identity_variant_is_valid(minor: int) -> None:
    for doc in build(K8S, (WORKLOAD_IDENTITY,)):
        assert kube_schema.problems(doc, minor) == [], (doc["kind"], doc["metadata"]["name"])


def test_the_workload_identity_variant_carries_no_azure_secret() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in build(K8S, (WORKLOAD_IDENTITY,))}
    assert set(docs[("Secret", "llm-executor-secrets")]["stringData"]) == {"llm_api_key"}
    config = docs[("ConfigMap", "llm-executor-config")]["data"]
    assert config["event_hub_namespace"].endswith(".servicebus.windows.net")
    assert config["storage_account_url"].startswith("https://")
    for name in ("llm-service", "executor-service"):
        account = docs[("ServiceAccount", name)]
        assert account["metadata"]["annotations"]["azure.workload.identity/client-id"]
        pod = docs[("Deployment", name)]["spec"]["template"]
        assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
        assert pod["spec"]["serviceAccountName"] == name
        env = {e["name"] for c in pod["spec"]["containers"] for e in c.get("env", [])}
        assert not env & {"EVENT_HUB_CONNECTION_STRING", "STORAGE_CONNECTION_STRING"}, name


def test_a_json_patch_on_a_missing_path_fails(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
                                      "data: {a: '1'}\n")
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [cm.yaml]\npatches:\n  - target: {kind: ConfigMap, name: c}\n"
        "    patch: |-\n      - {op: test, path: /data/a, value: '2'}\n")
    with pytest.raises(ValueError, match="test failed"):
        build(tmp_path)


def test_the_python_kustomize_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nnamePrefix: x-\n")
    with pytest.raises(NotImplementedError, match="namePrefix"):
        build(tmp_path)


@pytest.mark.parametrize("minor", MINORS)
def test_every_kustomize_object_is_valid(minor: int) -> None:
    docs = build(K8S)
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "Role", "NetworkPolicy"}
    for doc in docs:
        assert kube_schema.problems(doc, minor) == [], (doc["kind"], doc["metadata"]["name"])


@pytest.mark.parametrize("minor", MINORS)
def test_the_job_template_and_what_the_runner_renders_are_valid(minor: int) -> None:
    template = yaml.safe_load(DEFAULT_TEMPLATE.read_text())
    template["metadata"]["name"] = "template"
    assert kube_schema.problems(template, minor) == []
    cmd, s = command("Req:1", metadata={"a": "b"}), heavy_settings(heavy_job_runtime_class="gvisor")
    job = sandbox_job(cmd, s)
    assert kube_schema.problems(render_job(cmd, job, s, minor=minor), minor) == []
    assert kube_schema.problems(render_configmap(cmd, job, s, "0-uid"), minor) == []


def test_the_schema_check_can_fail() -> None:
    template = yaml.safe_load(DEFAULT_TEMPLATE.read_text())
    del template["spec"]["template"]["spec"]["containers"][0]["name"]
    template["spec"]["ttlSecondsAfterFinish"] = 1
    template["spec"]["backoffLimit"] = "1"
    causes = {(c.field, c.reason, c.decoding) for c in kube_schema.problems(template, 30)}
    assert causes == {
        ("spec.template.spec.containers[0].name", "FieldValueRequired", False),
        ("spec.ttlSecondsAfterFinish", "FieldValueInvalid", True),
        ("spec.backoffLimit", "FieldValueTypeInvalid", True),
    }


# -- KEDA (custom resources: our own minimal schema of KEDA's documented fields) -----------

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string"}, "namespace": {"type": "string"}, "labels": _STR_MAP,
    "annotations": _STR_MAP}, "additionalProperties": False}
#: The azure-eventhub scaler's metadata keys (keda.sh/docs/latest/scalers/azure-event-hub).
EVENTHUB_METADATA = {
    "connectionFromEnv", "storageConnectionFromEnv", "storageAccountName", "consumerGroup",
    "unprocessedEventThreshold", "activationUnprocessedEventThreshold", "blobContainer",
    "checkpointStrategy", "cloud", "endpointSuffix", "storageEndpointSuffix",
    "eventHubResourceURL", "eventHubNamespace", "eventHubNamespaceFromEnv", "eventHubName",
    "eventHubNameFromEnv",
}
SCALED_OBJECT = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False, "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "ScaledObject"},
        "metadata": _META,
        "spec": {"type": "object", "required": ["scaleTargetRef", "triggers"],
                 "additionalProperties": False, "properties": {
            "scaleTargetRef": {"type": "object", "required": ["name"],
                               "additionalProperties": False, "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "name": {"type": "string"}, "envSourceContainerName": {"type": "string"}}},
            **{k: {"type": "integer", "minimum": 0} for k in (
                "pollingInterval", "cooldownPeriod", "initialCooldownPeriod",
                "idleReplicaCount", "minReplicaCount", "maxReplicaCount")},
            "fallback": {"type": "object"}, "advanced": {"type": "object"},
            "triggers": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["type", "metadata"],
                "additionalProperties": False, "properties": {
                    "type": {"type": "string"}, "name": {"type": "string"},
                    "metadata": _STR_MAP, "useCachedMetrics": {"type": "boolean"},
                    "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                    "authenticationRef": {"type": "object", "required": ["name"],
                                          "additionalProperties": False, "properties": {
                        "name": {"type": "string"},
                        "kind": {"enum": ["TriggerAuthentication",
                                          "ClusterTriggerAuthentication"]}}}}}}}}}}
TRIGGER_AUTH = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False, "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"}, "kind": {"const": "TriggerAuthentication"},
        "metadata": _META,
        "spec": {"type": "object", "additionalProperties": False, "minProperties": 1,
                 "properties": {
            "secretTargetRef": {"type": "array", "items": {
                "type": "object", "required": ["parameter", "name", "key"],
                "additionalProperties": False, "properties": {
                    "parameter": {"type": "string"}, "name": {"type": "string"},
                    "key": {"type": "string"}}}},
            "env": {"type": "array"}, "podIdentity": {"type": "object", "required": ["provider"]},
            "azureKeyVault": {"type": "object"}, "hashiCorpVault": {"type": "object"}}}}}
KEDA = {"ScaledObject": SCALED_OBJECT, "TriggerAuthentication": TRIGGER_AUTH}


def keda_docs() -> list[dict[str, Any]]:
    path = K8S / "keda" / "executor-service-scaledobject.yaml"
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_keda_objects_have_the_documented_shape_and_point_at_real_things() -> None:
    docs = {d["kind"]: d for d in keda_docs()}
    assert set(docs) == set(KEDA)
    for kind, doc in docs.items():
        jsonschema.validate(doc, KEDA[kind])
        assert not kube_schema.has_schema(MINORS[-1], doc["apiVersion"], kind)  # a CRD
    so, auth = docs["ScaledObject"], docs["TriggerAuthentication"]
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "azure-eventhub"
    assert set(trigger["metadata"]) <= EVENTHUB_METADATA
    assert trigger["metadata"]["checkpointStrategy"] == "blobMetadata"  # our checkpoints
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    # The scaler's parameters for connection strings, from the seed's Secret.
    secret = next(d for d in build(K8S) if d["kind"] == "Secret")
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["parameter"] in {"connection", "storageConnection"}
        assert (ref["name"], ref["key"] in secret["stringData"]) == (
            secret["metadata"]["name"], True)
    deployments = {d["metadata"]["name"] for d in build(K8S) if d["kind"] == "Deployment"}
    assert so["spec"]["scaleTargetRef"]["name"] in deployments


def test_the_keda_schema_can_fail() -> None:
    so = next(d for d in keda_docs() if d["kind"] == "ScaledObject")
    so["spec"]["maxReplicas"] = 20  # the HPA's spelling, not KEDA's
    with pytest.raises(jsonschema.ValidationError, match="maxReplicas"):
        jsonschema.validate(so, SCALED_OBJECT)
