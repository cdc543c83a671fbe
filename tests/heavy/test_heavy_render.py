"""The rendered Job: every field of the contract, deterministic names, label-safe values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from kubernetes import client

from executor_worker.heavy.contract import MAX_CODE_BYTES, job_files
from executor_worker.heavy.kube import KubernetesJobRunner
from executor_worker.heavy.render import (
    COMMAND_KEY,
    DEFAULT_TEMPLATE,
    FINALIZER,
    job_name,
    load_template,
    render_configmap,
    render_job,
    request_label,
)
from executor_worker.results import sandbox_job
from schemas import ExecutionCommand, Limits
from tests.heavy.conftest import command, heavy_settings

DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")


def render(cmd: ExecutionCommand, **settings: object) -> dict:
    s = heavy_settings(**settings)
    return render_job(cmd, sandbox_job(cmd, s), s)


def test_names_are_deterministic_dns_safe_and_distinct_per_attempt() -> None:
    a1, again, a2 = job_name("req-1", 1), job_name("req-1", 1), job_name("req-1", 2)
    assert a1 == again != a2
    for name in (a1, a2, job_name("Weird:ID.with.dots", 3), job_name("x" * 128, 99)):
        assert DNS1123.match(name) and len(name) <= 63 and name.startswith("llmexec-")


def test_request_label_is_the_id_when_valid_else_a_hash() -> None:
    assert request_label("req-1") == "req-1"
    for odd in ("a:b", "x" * 64, "ends-with-dash-", "ends."):
        value = request_label(odd)
        assert value != odd and LABEL.match(value)


def test_job_carries_the_whole_contract() -> None:
    cmd = command("Req:42", attempt=2, limits=Limits(timeout_s=90.5))
    job = render(cmd, heavy_job_runtime_class="gvisor")
    meta, spec = job["metadata"], job["spec"]
    assert meta["name"] == job_name("Req:42", 2) and meta["namespace"] == "default"
    assert meta["labels"]["app"] == "heavy-executor"
    assert meta["labels"]["llmexec/managed"] == "true"
    assert meta["labels"]["llmexec/attempt"] == "2"
    assert LABEL.match(meta["labels"]["llmexec/request-id"])
    assert meta["annotations"]["llmexec/request-id"] == "Req:42"
    assert spec["activeDeadlineSeconds"] == 91 + 60  # timeout + start-up grace
    assert spec["ttlSecondsAfterFinished"] == 3600
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget",
                                                                  "status": "True"}]}
    assert rules[1]["action"] == "FailJob" and "onPodConditions" not in rules[1]
    assert rules[1]["onExitCodes"] == {"containerName": "heavy-executor", "operator": "NotIn",
                                       "values": [0]}
    assert spec["backoffLimit"] >= 0
    assert meta["finalizers"] == [FINALIZER]
    pod = spec["template"]["spec"]
    assert spec["template"]["metadata"]["labels"]["app"] == "heavy-executor"
    assert spec["template"]["metadata"]["labels"]["llmexec/job"] == meta["name"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    assert pod["runtimeClassName"] == "gvisor"
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 1000
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    assert c["image"] == "heavy-executor:latest"
    assert c["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"},
                              "limits": {"cpu": "4", "memory": "8Gi"}}
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert not any("valueFrom" in e or "envFrom" in c for e in c["env"])
    assert c["args"][:3] == ["python", "-m", "executor_worker.heavy_main"] and "command" not in c
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["job"]["configMap"]["name"] == meta["name"]
    assert COMMAND_KEY not in {i["key"] for i in volumes["job"]["configMap"]["items"]}
    assert "emptyDir" in volumes["work"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/llmexec/job"]["readOnly"] is True


def test_deadline_is_capped_by_heavy_job_timeout_and_runtime_class_optional() -> None:
    job = render(command(limits=Limits(timeout_s=7200)), heavy_job_timeout=600,
                 heavy_job_start_grace_s=30)
    assert job["spec"]["activeDeadlineSeconds"] == 630
    assert "runtimeClassName" not in job["spec"]["template"]["spec"]


def test_resources_follow_the_settings() -> None:
    job = render(command(), heavy_job_cpu_request="1", heavy_job_cpu_limit="2",
                 heavy_job_memory_request="1Gi", heavy_job_memory_limit="2Gi")
    (c,) = job["spec"]["template"]["spec"]["containers"]
    assert c["resources"] == {"requests": {"cpu": "1", "memory": "1Gi"},
                              "limits": {"cpu": "2", "memory": "2Gi"}}


def test_rendering_is_deterministic_and_does_not_touch_the_template() -> None:
    assert render(command()) == render(command())
    assert render(command("other"))["metadata"]["name"] != render(command())["metadata"]["name"]


def test_configmap_holds_the_files_and_the_command_and_is_owned_by_the_job() -> None:
    cmd, s = command(), heavy_settings()
    cm = render_configmap(cmd, sandbox_job(cmd, s), s, owner_uid="uid-1")
    assert cm["metadata"]["name"] == job_name("req-1", 1)
    (ref,) = cm["metadata"]["ownerReferences"]
    assert ref["kind"] == "Job" and ref["uid"] == "uid-1" and ref["name"] == job_name("req-1", 1)
    assert cm["data"]["main.py"] == "print('hi')"
    assert ExecutionCommand.model_validate_json(cm["data"][COMMAND_KEY]) == cmd
    assert cm["metadata"]["finalizers"] == [FINALIZER]


@pytest.mark.parametrize("minor", [25, 26, 28, 29, 34, 35])
def test_job_is_rendered_for_the_servers_minor(minor: int) -> None:
    cmd, s = command(), heavy_settings()
    job = render_job(cmd, sandbox_job(cmd, s), s, minor=minor)
    policy = job["spec"].get("podFailurePolicy")
    if minor < 26:  # alpha and off by default: a 1.25 server would drop it silently
        assert policy is None and job["spec"]["backoffLimit"] == 1
        return
    exit_rule = policy["rules"][1]
    # Before 1.29 the schema requires onPodConditions on every rule: sent empty there.
    assert ("onPodConditions" in exit_rule) is (minor < 29)
    assert exit_rule.get("onPodConditions", []) == []
    assert policy["rules"][0]["onPodConditions"][0]["status"] == "True"


def test_a_template_finalizer_is_kept_and_ours_added_once() -> None:
    cmd, s = command(), heavy_settings()
    template = load_template()
    template = {**template, "metadata": {**template["metadata"], "finalizers": ["x.io/keep"]}}
    job = render_job(cmd, sandbox_job(cmd, s), s, template)
    assert job["metadata"]["finalizers"] == ["x.io/keep", FINALIZER]
    again = render_job(cmd, sandbox_job(cmd, s), s, job)
    assert again["metadata"]["finalizers"] == ["x.io/keep", FINALIZER]


def test_code_above_the_limit_is_refused() -> None:
    cmd, s = command(), heavy_settings()
    job = sandbox_job(cmd, s)
    big = type(job)(**{**job.__dict__, "code": "x" * (MAX_CODE_BYTES + 1)})
    with pytest.raises(ValueError, match="exceeds"):
        job_files(big)


def test_template_path_is_a_setting_and_must_be_a_job(tmp_path: Path) -> None:
    custom = tmp_path / "job.yaml"
    custom.write_text(DEFAULT_TEMPLATE.read_text().replace("imagePullPolicy: IfNotPresent",
                                                           "imagePullPolicy: Always"))
    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
    runner = KubernetesJobRunner(heavy_settings(heavy_job_template=str(custom)), api)
    (c,) = runner._template["spec"]["template"]["spec"]["containers"]
    assert c["imagePullPolicy"] == "Always"
    api.close()
    (tmp_path / "cm.yaml").write_text("kind: ConfigMap\n")
    with pytest.raises(ValueError, match="not a Job template"):
        load_template(tmp_path / "cm.yaml")
