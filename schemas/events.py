"""The four events of the platform, one per hub.

``ExecutionRequest``  requests hub    what other systems publish ("compute X" or ready code)
``RepairRequest``     requests hub    the executor asking the LLM worker to fix a failed attempt
``ExecutionCommand``  executions hub  validated code, routed, ready to run
``ExecutionResult``   results hub     the outcome, one per request (dedupe on request_id+attempt)
``DeadLetter``        deadletter hub  anything that could not be processed, with the reason
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, JsonValue, model_validator

from schemas.base import (
    ErrorInfo,
    EventModel,
    ExecRoute,
    Limits,
    Metadata,
    Part,
    RequestId,
    ResultStatus,
    Route,
    derived_id,
    new_request_id,
    utcnow,
)

#: Largest code we accept in a request (the 1 MB event limit bounds it anyway).
MAX_CODE_CHARS = 256 * 1024
MAX_PROMPT_CHARS = 64 * 1024


class ExecutionRequest(EventModel):
    """A request to compute something: a ``prompt`` for the LLM, or ready ``code``.

    ``request_id`` is the idempotency key and the partition key; supply your own to make
    re-publishing safe, or let the producer make one.
    """

    kind: Literal["request"] = "request"
    request_id: RequestId = Field(default_factory=new_request_id)
    prompt: Annotated[str | None, Field(max_length=MAX_PROMPT_CHARS)] = None
    code: Annotated[str | None, Field(max_length=MAX_CODE_CHARS)] = None
    inputs: JsonValue = None
    limits: Limits = Field(default_factory=Limits)
    route: Route = Route.AUTO
    allow_rewrite: bool = Field(
        default=False,
        description="Let the LLM repair user-supplied code that fails; off by default.",
    )
    metadata: Metadata = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def event_id(self) -> str:
        return derived_id("request", self.request_id)

    @model_validator(mode="after")
    def _prompt_or_code(self) -> ExecutionRequest:
        has_prompt = bool(self.prompt and self.prompt.strip())
        has_code = bool(self.code and self.code.strip())
        if not (has_prompt or has_code):
            raise ValueError("a request needs a non-empty 'prompt' or 'code'")
        return self


class ValidationIssue(Part):
    rule: str
    message: str
    line: int | None = None


class ValidationReport(Part):
    ok: bool
    issues: list[ValidationIssue] = Field(default_factory=list)


class LlmUsage(Part):
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


class AttemptRecord(Part):
    """One try at a request: the code, how it was checked, and what happened."""

    attempt: Annotated[int, Field(ge=1)]
    code: str | None = None
    source: Literal["user", "llm"] = "user"
    validation: ValidationReport | None = None
    status: ResultStatus | None = None
    error: ErrorInfo | None = None
    usage: LlmUsage | None = None


class ExecutionCommand(EventModel):
    """Validated code, routed and ready to run. ``attempt`` counts from 1."""

    kind: Literal["execution"] = "execution"
    request_id: RequestId
    attempt: Annotated[int, Field(ge=1)] = 1
    code: Annotated[str, Field(min_length=1, max_length=MAX_CODE_CHARS)]
    route: ExecRoute = ExecRoute.LIGHT
    route_reason: str = ""
    requested_route: Route = Route.AUTO
    limits: Limits = Field(default_factory=Limits)
    inputs: JsonValue = None
    source: Literal["user", "llm"] = "user"
    prompt: str | None = None
    allow_rewrite: bool = False
    validation: ValidationReport = Field(default_factory=lambda: ValidationReport(ok=True))
    usage: LlmUsage | None = None
    history: list[AttemptRecord] = Field(
        default_factory=list, description="Earlier attempts of this request, oldest first."
    )
    metadata: Metadata = Field(default_factory=dict)

    @property
    def event_id(self) -> str:
        return derived_id("execution", self.request_id, self.attempt)


class Artifact(Part):
    """A file the code left in its working directory."""

    name: str
    size: Annotated[int, Field(ge=0)]
    sha256: str
    content_b64: str | None = Field(default=None, description="Inline content when small.")

    def content(self) -> bytes | None:
        return None if self.content_b64 is None else base64.b64decode(self.content_b64)


class ExecutionResult(EventModel):
    """The outcome of a request. Consumers deduplicate on ``(request_id, attempt)``."""

    kind: Literal["result"] = "result"
    request_id: RequestId
    attempt: Annotated[int, Field(ge=0)] = 1
    status: ResultStatus
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    duration_ms: Annotated[float, Field(ge=0)] = 0.0
    route: ExecRoute | None = None
    attempts: list[AttemptRecord] = Field(default_factory=list)
    code: str | None = None
    error: ErrorInfo | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    sandbox: list[str] = Field(default_factory=list, description="Isolation layers in force.")
    metadata: Metadata = Field(default_factory=dict)
    completed_at: datetime = Field(default_factory=utcnow)

    @property
    def event_id(self) -> str:
        return derived_id("result", self.request_id, self.attempt)

    @property
    def dedupe_key(self) -> tuple[str, int]:
        return (self.request_id, self.attempt)


class RepairRequest(EventModel):
    """Sent by the executor back to the requests hub when an LLM-written attempt failed."""

    kind: Literal["repair"] = "repair"
    request_id: RequestId
    command: ExecutionCommand
    failure: ExecutionResult

    @property
    def attempt(self) -> int:
        return self.command.attempt

    @property
    def event_id(self) -> str:
        return derived_id("repair", self.request_id, self.command.attempt)


class DeadLetter(EventModel):
    """An event that could not be processed, kept whole so it can be inspected and replayed."""

    kind: Literal["deadletter"] = "deadletter"
    request_id: str | None = None
    reason: str
    error_type: str = ""
    attempts: Annotated[int, Field(ge=0)] = 0
    source_hub: str
    consumer_group: str = ""
    partition_id: str
    offset: str
    sequence_number: int
    body_b64: str = Field(description="The raw event body, base64, byte for byte.")
    properties: dict[str, str] = Field(default_factory=dict)
    failed_at: datetime = Field(default_factory=utcnow)

    @property
    def body(self) -> bytes:
        return base64.b64decode(self.body_b64)

    @property
    def event_id(self) -> str:
        return derived_id("deadletter", self.source_hub, self.partition_id, self.sequence_number)
