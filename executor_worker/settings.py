"""The executor's settings: the route limits every service shares (inherited from
:class:`pipeline.settings.ExecutionSettings`), plus where and how heavy work runs
(``HEAVY_RUNNER``, the seed's ``HEAVY_JOB_*`` Job resources, the reconciler's timings).
Read once in main (``llmexec.config``) and passed down; the sandbox's own group is
:class:`executor_worker.sandbox.SandboxSettings`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from pipeline.settings import ExecutionSettings


class ExecutorSettings(ExecutionSettings):
    heavy_job_cpu_request: str = "2"
    heavy_job_cpu_limit: str = "4"
    heavy_job_memory_request: str = "4Gi"
    heavy_job_memory_limit: str = "8Gi"
    heavy_job_image: str = "heavy-executor:latest"
    #: Empty: the executor's own namespace when it runs in a pod, else "default".
    heavy_job_namespace: str = ""
    #: Where heavy work runs: ``local`` (the heavy-executor entrypoint as a subprocess, the
    #: embedded default) or ``kubernetes`` (one Job per attempt, reported by a reconciler).
    heavy_runner: Literal["local", "kubernetes"] = "local"
    heavy_job_runtime_class: str | None = None
    #: The Job template; empty: the repository's job_templates/heavy-job.yaml.
    heavy_job_template: str = ""
    #: Added to the code's timeout for the Job's activeDeadlineSeconds: the entrypoint
    #: enforces the timeout itself; the deadline is the backstop and includes pod start.
    heavy_job_start_grace_s: Annotated[int, Field(ge=0, le=3600)] = 60
    #: A pod stuck unschedulable or failing to pull its image this long fails the request.
    heavy_job_pending_timeout_s: Annotated[float, Field(gt=0)] = 300.0
    #: The reconciler's full re-list interval (the watch in between is restarted this often).
    heavy_job_resync_s: Annotated[float, Field(gt=0, le=3600)] = 60.0


