"""Light execution: the sandbox port and its implementations."""

from executor_worker.sandbox.api import Sandbox, SandboxJob, SandboxOutcome, SandboxUnavailable
from executor_worker.sandbox.subprocess_sandbox import SubprocessSandbox

__all__ = ["Sandbox", "SandboxJob", "SandboxOutcome", "SandboxUnavailable", "SubprocessSandbox"]
