"""A finished (or stuck) Job, its pod and the pod's log -> one SandboxOutcome.

The pod's own result record wins whenever it is there: the entrypoint ran the code and
said what happened. Without it, the Job's and pod's status say why, in this order:
killed for memory, deadline, image or scheduling trouble, pod gone, anything else.
Objects are plain dicts in the API's JSON shape (camelCase), so this needs no client.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from executor_worker.heavy.contract import failed, parse_record
from executor_worker.sandbox.api import SandboxOutcome

CONTAINER = "heavy-executor"
IMAGE_ERRORS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                          "ErrImageNeverPull", "RegistryUnavailable"})
#: Extra layer name on every Kubernetes outcome: the pod is part of the boundary.
POD_LAYER = "k8s-pod"


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def finished(job: dict[str, Any]) -> bool:
    return condition(job, "Complete") is not None or condition(job, "Failed") is not None


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == CONTAINER:
            return dict(status)
    return {}


def stuck_reason(pod: dict[str, Any] | None) -> tuple[str, str] | None:
    """Why a pending pod cannot start, if it is one of the reasons that do not heal."""
    if pod is None or (pod.get("status") or {}).get("phase") != "Pending":
        return None
    waiting = (_container(pod).get("state") or {}).get("waiting") or {}
    if waiting.get("reason") in IMAGE_ERRORS:
        return "image_pull", (f"cannot pull the heavy-executor image: {waiting['reason']}: "
                              f"{waiting.get('message', '')}".rstrip(": "))
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return "unschedulable", ("the heavy job's pod cannot be scheduled: "
                                     f"{cond.get('message') or cond.get('reason', '')}")
    return None


def job_outcome(job: dict[str, Any], pod: dict[str, Any] | None, log: str | None,
                memory_limit: str) -> SandboxOutcome:
    layers = (POD_LAYER,)
    record = parse_record(log) if log else None
    if record is not None:
        return dataclasses.replace(record, layers=(POD_LAYER, *record.layers))
    terminated = ((_container(pod).get("state") or {}).get("terminated") or {}) if pod else {}
    if terminated.get("reason") == "OOMKilled":
        return failed("memory_limit", f"killed by the pod's memory limit ({memory_limit})",
                      layers=layers)
    job_failed = condition(job, "Failed") or {}
    if job_failed.get("reason") == "DeadlineExceeded":
        stuck = stuck_reason(pod)
        if stuck is not None:  # it never ran: say why rather than "timed out"
            return failed(*stuck, layers=layers)
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        return failed("timeout", f"the Job exceeded its deadline ({deadline} s)",
                      layers=layers, status="timed_out")
    stuck = stuck_reason(pod)
    if stuck is not None:
        return failed(*stuck, layers=layers)
    if pod is None:
        return failed("pod_deleted", "the Job's pod was deleted before its result was read",
                      layers=layers)
    if terminated:
        why = terminated.get("reason") or "Error"
        return failed("no_result", f"the heavy-executor exited with status "
                      f"{terminated.get('exitCode')} ({why}) without a result: "
                      f"{(terminated.get('message') or '').strip()[-500:]}".rstrip(": "),
                      layers=layers)
    reason = job_failed.get("reason") or "unknown"
    return failed("no_result", f"the Job ended ({reason}) without a result record",
                  layers=layers)
