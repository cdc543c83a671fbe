"""The sandbox port: what the executor asks of any light-execution sandbox.

Every implementation (the plain subprocess runner, the zygote) takes a :class:`SandboxJob`
and returns a :class:`SandboxOutcome`; it never raises for anything the *code* did (a crash,
a timeout, an attack): those are outcomes. It raises only when the sandbox itself is broken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import JsonValue

from pipeline.errors import ConfigError, TransientError
from schemas import Artifact

OutcomeStatus = Literal["succeeded", "failed", "timed_out"]


@dataclass(frozen=True)
class SandboxJob:
    job_id: str
    code: str
    inputs: JsonValue = None
    timeout_s: float = 30.0
    memory_mb: int = 512
    cpu_s: int | None = None  # CPU-time limit; defaults to ceil(timeout_s) + 1
    max_output_bytes: int = 1024 * 1024
    max_file_bytes: int = 16 * 1024 * 1024
    max_artifact_inline_bytes: int = 64 * 1024


@dataclass(frozen=True)
class SandboxOutcome:
    status: OutcomeStatus
    exit_code: int | None
    stdout: str
    stderr: str
    duration_ms: float
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    signal: int | None = None
    #: Stable machine reason when not succeeded: timeout, memory_limit, cpu_limit,
    #: file_size_limit, killed, nonzero_exit, output_limit, sandbox_error.
    reason_code: str | None = None
    #: Human-readable reason, e.g. "killed by signal 9 (SIGKILL)".
    reason: str | None = None
    artifacts: list[Artifact] = field(default_factory=list)
    layers: tuple[str, ...] = ()


class Sandbox(Protocol):
    """A place to run untrusted Python."""

    async def start(self) -> None:
        """Prepare (fork the zygote, probe layers). Raises SandboxRefused if unusable."""

    async def run(self, job: SandboxJob) -> SandboxOutcome: ...

    def layers(self) -> tuple[str, ...]:
        """Names of the isolation layers in force, e.g. ('process', 'rlimits', 'netns')."""
        ...

    def ready(self) -> bool: ...

    def notes(self) -> dict[str, str]:
        """Why each layer that is not in force is missing (for health and start-up logs)."""
        ...

    async def close(self) -> None: ...


class SandboxRefused(ConfigError):
    """At start: the host cannot provide the isolation the configuration asks for, or the
    sandbox cannot start at all. A ConfigError, so start-up stops with its one-line message
    (``SANDBOX_LEVEL``/``SANDBOX_ALLOW_DEGRADED``/``SANDBOX_WORK_DIR``)."""


class SandboxUnavailable(TransientError):
    """At run time: the sandbox cannot take a job right now (its zygote died, or setting up
    the job's isolation failed). The processor retries the event; the next run starts a new
    zygote."""
