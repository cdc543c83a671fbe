"""The one place that reads ``HEAVY_RUNNER`` and picks where heavy work runs."""

from __future__ import annotations

from executor_worker.heavy.local import LocalJobRunner
from executor_worker.heavy.runner import JobRunner
from executor_worker.sandbox import SandboxSettings
from executor_worker.settings import ExecutorSettings


def build_job_runner(settings: ExecutorSettings, sandbox: SandboxSettings) -> JobRunner:
    """Build (not start) the heavy runner. The local runner runs the heavy-executor
    entrypoint with the same sandbox settings as light work (only its limits differ), so
    asking for ``heavy`` is never a way around the light sandbox's layers."""
    if settings.heavy_runner == "kubernetes":
        # Imported here so the embedded default never loads the Kubernetes client.
        from executor_worker.heavy.kube import KubernetesJobRunner

        return KubernetesJobRunner.from_settings(settings)
    return LocalJobRunner(sandbox, start_grace_s=float(settings.heavy_job_start_grace_s))
