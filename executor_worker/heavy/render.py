"""Render the heavy Job and its ConfigMap from job_templates/heavy-job.yaml.

Everything variable comes from the command and ExecutorSettings; the template holds the
fixed policy. Names and labels are deterministic in ``(request_id, attempt)``, so a
re-submit hits 409 Conflict instead of running the code twice.

Supported API servers: 1.25 and newer (``MIN_MINOR``); the Job is rendered for the server's
minor (``render_job(..., minor=)``), because a field a server's version does not enable is
silently dropped there. The Job and its ConfigMap carry ``FINALIZER``: neither can vanish
(TTL, ``kubectl delete``, the garbage collector) before the reconciler has reported the Job.
"""

from __future__ import annotations

import copy
import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from executor_worker.heavy.contract import job_files
from executor_worker.sandbox.api import SandboxJob
from executor_worker.settings import ExecutorSettings
from schemas import ExecutionCommand, derived_id

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "job_templates" / "heavy-job.yaml"
NAME_PREFIX = "llmexec-"
MANAGED = "llmexec/managed"
REQUEST_LABEL, ATTEMPT_LABEL, JOB_LABEL = "llmexec/request-id", "llmexec/attempt", "llmexec/job"
REQUEST_ANNOTATION = "llmexec/request-id"
COMMAND_KEY = "command.json"  # in the ConfigMap, for the reconciler; not mounted in the pod
SELECTOR = f"app=heavy-executor,{MANAGED}=true"
#: Held on the Job and its ConfigMap until the reconciler has published the Job's result.
FINALIZER = "llmexec/report"
#: The oldest API server minor (1.x) the rendered objects are checked against: 1.24 is
#: end-of-life since 2023-07 and the official schemas we check with no longer include it.
MIN_MINOR = 25
#: podFailurePolicy is alpha (off by default) in 1.25, beta and on from 1.26: below that the
#: server would drop it silently, so it is not sent at all.
POD_FAILURE_POLICY_MINOR = 26
#: Before 1.29 the OpenAPI schema requires ``onPodConditions`` in every rule (the template
#: has an empty one on its exit-code rule); from 1.29 it is optional and not sent.
EMPTY_CONDITIONS_OPTIONAL_MINOR = 29

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")


def job_name(request_id: str, attempt: int) -> str:
    """``llmexec-<32 hex>``: DNS-1123, 40 characters, the same for every re-submit."""
    return NAME_PREFIX + derived_id("heavy-job", request_id, attempt)


def request_label(request_id: str) -> str:
    """The request id itself when it is a valid label value, else its hash (the exact id is
    always in the annotation)."""
    return request_id if _LABEL_VALUE.match(request_id) else derived_id("request", request_id)


@lru_cache(maxsize=4)
def load_template(path: Path = DEFAULT_TEMPLATE) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("kind") != "Job":
        raise ValueError(f"{path} is not a Job template")
    return doc


def render_job(cmd: ExecutionCommand, job: SandboxJob, s: ExecutorSettings,
               template: dict[str, Any] | None = None, *,
               minor: int | None = None) -> dict[str, Any]:
    """The Job for an API server of version 1.``minor`` (None: the newest)."""
    doc = copy.deepcopy(template or load_template())
    name = job_name(cmd.request_id, cmd.attempt)
    labels = {REQUEST_LABEL: request_label(cmd.request_id), ATTEMPT_LABEL: str(cmd.attempt),
              JOB_LABEL: name, MANAGED: "true"}
    meta = doc.setdefault("metadata", {})
    meta["name"] = name
    meta["namespace"] = s.heavy_job_namespace or "default"
    meta.setdefault("labels", {}).update(labels)
    meta.setdefault("annotations", {}).update({
        REQUEST_ANNOTATION: cmd.request_id, ATTEMPT_LABEL: str(cmd.attempt),
    })
    _hold(meta)
    spec = doc["spec"]
    if minor is not None and minor < POD_FAILURE_POLICY_MINOR:
        # Without the policy, backoffLimit alone decides: a failed pod is retried once.
        spec.pop("podFailurePolicy", None)
    elif minor is None or minor >= EMPTY_CONDITIONS_OPTIONAL_MINOR:
        for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
            if rule.get("onPodConditions") == []:
                del rule["onPodConditions"]
    # The entrypoint enforces the code's own timeout; the deadline is the backstop and
    # includes scheduling and image pull, hence the grace.
    spec["activeDeadlineSeconds"] = math.ceil(job.timeout_s) + s.heavy_job_start_grace_s
    pod_meta = spec["template"].setdefault("metadata", {})
    pod_meta.setdefault("labels", {}).update(labels)
    pod = spec["template"]["spec"]
    if s.heavy_job_runtime_class:
        pod["runtimeClassName"] = s.heavy_job_runtime_class
    (container,) = [c for c in pod["containers"] if c["name"] == "heavy-executor"]
    container["image"] = s.heavy_job_image
    container["resources"] = {
        "requests": {"cpu": s.heavy_job_cpu_request, "memory": s.heavy_job_memory_request},
        "limits": {"cpu": s.heavy_job_cpu_limit, "memory": s.heavy_job_memory_limit},
    }
    for volume in pod["volumes"]:
        if "configMap" in volume:
            volume["configMap"]["name"] = name
    return doc


def render_configmap(cmd: ExecutionCommand, job: SandboxJob, s: ExecutorSettings,
                     owner_uid: str | None) -> dict[str, Any]:
    """The job's files, plus the whole command for the reconciler. Owned by the Job, so the
    garbage collector deletes it with the Job (TTL or otherwise)."""
    name = job_name(cmd.request_id, cmd.attempt)
    data = job_files(job)
    data[COMMAND_KEY] = cmd.model_dump_json()
    meta: dict[str, Any] = {
        "name": name, "namespace": s.heavy_job_namespace or "default",
        "labels": {"app": "heavy-executor", MANAGED: "true", JOB_LABEL: name},
        "annotations": {REQUEST_ANNOTATION: cmd.request_id},
    }
    _hold(meta)
    if owner_uid:
        meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                    "uid": owner_uid, "controller": False,
                                    "blockOwnerDeletion": False}]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def _hold(meta: dict[str, Any]) -> None:
    finalizers = list(meta.get("finalizers") or [])
    if FINALIZER not in finalizers:
        finalizers.append(FINALIZER)
    meta["finalizers"] = finalizers


def configmap_size(configmap: dict[str, Any]) -> int:
    return len(json.dumps(configmap["data"]).encode())
