"""The code-generation port: what the worker asks of a model, and what it gets back.

The Anthropic adapter implements :class:`CodeGenerator`; tests may bring their own. Errors
are part of the port: an adapter raises :class:`LlmTransientError` (retry later: throttled,
overloaded, unreachable, or an answer that did not follow the tool schema) or
:class:`LlmPermanentError` (retrying cannot help: bad key, unknown model, bad request). Both
carry an ``error_class`` the worker counts in its metrics, so the worker never needs to know
the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from pipeline.errors import PermanentError, TransientError
from schemas import AttemptRecord, LlmUsage, Route


class Submission(BaseModel):
    """The arguments of the ``submit_code`` tool call, checked after the model answers.

    The JSON schema the model sees is in :mod:`llm_worker.prompt`; a test keeps both equal.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    code: Annotated[str, Field(min_length=1)]
    route: Literal["light", "heavy"]
    route_reason: str
    expected_runtime_s: Annotated[float, Field(ge=0)]
    expected_memory_mb: Annotated[float, Field(ge=0)]
    packages: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class GenerationTask:
    """Everything the model is told about one request: the task and the failed attempts."""

    prompt: str
    inputs: JsonValue = None
    history: list[AttemptRecord] = field(default_factory=list)
    requested_route: Route = Route.AUTO


@dataclass(frozen=True)
class Generation:
    submission: Submission
    usage: LlmUsage
    latency_s: float = 0.0

    @property
    def code(self) -> str:
        return self.submission.code


class CodeGenerator(Protocol):
    async def generate(self, task: GenerationTask) -> Generation:
        """One model call. Raises LlmTransientError or LlmPermanentError, nothing else."""
        ...

    async def close(self) -> None: ...


class LlmTransientError(TransientError):
    """The model call may succeed later. ``usage`` is set when tokens were spent anyway
    (an answer that ignored the tool), so they are still counted."""

    def __init__(self, message: str, *, error_class: str, delay: float | None = None,
                 usage: LlmUsage | None = None) -> None:
        super().__init__(message, delay)
        self.error_class = error_class
        self.usage = usage


class LlmPermanentError(PermanentError):
    """The model call will not succeed as configured; the message says what to fix."""

    def __init__(self, message: str, *, error_class: str, status: int | None = None) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.status = status
