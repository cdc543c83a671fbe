"""Light execution: the sandbox port and its implementations."""

from executor_worker.sandbox.api import (
    Sandbox,
    SandboxJob,
    SandboxOutcome,
    SandboxRefused,
    SandboxUnavailable,
)
from executor_worker.sandbox.factory import build_sandbox
from executor_worker.sandbox.settings import SandboxSettings
from executor_worker.sandbox.subprocess_sandbox import SubprocessSandbox
from executor_worker.sandbox.zygote import ZygoteSandbox

__all__ = [
    "Sandbox",
    "SandboxJob",
    "SandboxOutcome",
    "SandboxRefused",
    "SandboxSettings",
    "SandboxUnavailable",
    "SubprocessSandbox",
    "ZygoteSandbox",
    "build_sandbox",
]
