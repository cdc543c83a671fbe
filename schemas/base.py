"""Common pieces of every event: the base model, identifiers, limits and enums.

Rules every event follows:
- it carries ``schema_version`` and a ``kind`` discriminator;
- unknown fields from newer producers are ignored on decode (forward compatible);
- models are frozen and validated on construction, so a producer cannot emit an invalid event.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

SCHEMA_VERSION = 1

#: Upper bound for anything an id is built from; keeps partition keys and Job names sane.
RequestId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$"),
]

Metadata = dict[str, JsonValue]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_request_id() -> str:
    """A fresh id for a request that did not bring its own (the only random id we make)."""
    return uuid.uuid4().hex


def derived_id(*parts: object) -> str:
    """Deterministic id for an output event, so a redelivered input yields the same output."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    return digest[:32]


class EventModel(BaseModel):
    """Base of every event on every hub."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=False)

    schema_version: Annotated[int, Field(ge=1)] = SCHEMA_VERSION

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=False).encode()


class Part(BaseModel):
    """Base of nested values (not events themselves)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Route(StrEnum):
    AUTO = "auto"
    LIGHT = "light"
    HEAVY = "heavy"


class ExecRoute(StrEnum):
    """Where an execution actually runs (a resolved :class:`Route`)."""

    LIGHT = "light"
    HEAVY = "heavy"


class ResultStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    REJECTED = "rejected"


class Limits(Part):
    """Resource limits a request asks for; ``None`` means the platform default for the route."""

    timeout_s: Annotated[float | None, Field(gt=0, le=24 * 3600)] = None
    memory_mb: Annotated[int | None, Field(ge=16, le=1024 * 1024)] = None


class ErrorInfo(Part):
    """A structured, human-readable error.

    ``code`` is a stable machine-readable reason (``llm_not_configured``, ``validation_failed``,
    ``timeout``, ``memory_limit``, ``killed``, ``nonzero_exit``, ...); ``message`` is for people.
    """

    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
