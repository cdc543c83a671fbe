"""The ``JobRunner`` port: where heavy jobs run.

``submit`` starts one job per ``(request_id, attempt)``; submitting the same pair again is
harmless (the Kubernetes runner's deterministic Job name makes it a 409, treated as done).
An *inline* runner (the local subprocess) returns the outcome from ``submit``; a *detached*
one (Kubernetes) returns None and later yields a :class:`JobCompletion` from
``completions()``, which the reconciler publishes and then acknowledges with
``mark_reported`` — so a job outlives the executor that submitted it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from executor_worker.sandbox.api import SandboxJob, SandboxOutcome
from schemas import ExecutionCommand


@dataclass(frozen=True)
class JobCompletion:
    request_id: str
    attempt: int
    #: The command as submitted; None only when it was lost with a deleted Job.
    command: ExecutionCommand | None
    outcome: SandboxOutcome
    #: Runner-private handle for mark_reported (e.g. the Job's name).
    handle: Any = None


class JobRunner(Protocol):
    async def start(self) -> None: ...

    async def submit(self, command: ExecutionCommand, job: SandboxJob) -> SandboxOutcome | None:
        """Start the job; an inline runner returns its outcome, a detached one None.
        Raises SandboxUnavailable / TransientError when the backend cannot take it now."""
        ...

    def completions(self) -> AsyncIterator[JobCompletion]:
        """Finished, not yet reported jobs (a detached runner); ends when the runner closes."""
        ...

    async def mark_reported(self, completion: JobCompletion) -> None: ...

    def ready(self) -> bool: ...

    def describe(self) -> dict[str, Any]:
        """What /api/v1/health shows about this runner."""
        ...

    async def close(self) -> None: ...
