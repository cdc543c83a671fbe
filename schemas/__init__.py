"""The contract: event models, hub names and JSON Schema export. Pure data, no I/O."""

from schemas.base import (
    SCHEMA_VERSION,
    ErrorInfo,
    EventModel,
    ExecRoute,
    Limits,
    ResultStatus,
    Route,
    derived_id,
    new_request_id,
)
from schemas.codec import EVENT_TYPES, DecodeError, Event, decode_event, export_json_schemas
from schemas.events import (
    Artifact,
    AttemptRecord,
    DeadLetter,
    ExecutionCommand,
    ExecutionRequest,
    ExecutionResult,
    LlmUsage,
    RepairRequest,
    ValidationIssue,
    ValidationReport,
)
from schemas.hubs import HubNames

__all__ = [
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "Artifact",
    "AttemptRecord",
    "DeadLetter",
    "DecodeError",
    "ErrorInfo",
    "Event",
    "EventModel",
    "ExecRoute",
    "ExecutionCommand",
    "ExecutionRequest",
    "ExecutionResult",
    "HubNames",
    "Limits",
    "LlmUsage",
    "RepairRequest",
    "ResultStatus",
    "Route",
    "ValidationIssue",
    "ValidationReport",
    "decode_event",
    "derived_id",
    "export_json_schemas",
    "new_request_id",
]
