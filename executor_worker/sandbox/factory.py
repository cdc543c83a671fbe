"""The one place that reads SandboxSettings and picks the light-execution sandbox."""

from __future__ import annotations

from executor_worker.sandbox.api import Sandbox
from executor_worker.sandbox.settings import SandboxSettings
from executor_worker.sandbox.subprocess_sandbox import SubprocessSandbox
from executor_worker.sandbox.zygote import ZygoteSandbox


def build_sandbox(settings: SandboxSettings) -> Sandbox:
    """Build (not start) the configured sandbox; ``await sandbox.start()`` probes the host
    and raises SandboxRefused if it falls short of ``settings.level``.

    The zygote is a fresh ``python -I`` exec'd with an empty environment and only its
    control socket, so it inherits nothing the worker has read, whenever start() runs.
    """
    if settings.kind == "subprocess":
        return SubprocessSandbox(work_root=settings.work_dir)
    return ZygoteSandbox(settings)
