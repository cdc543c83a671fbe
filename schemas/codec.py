"""Bytes <-> events. One place decides what a body means."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from schemas.events import (
    DeadLetter,
    ExecutionCommand,
    ExecutionRequest,
    ExecutionResult,
    RepairRequest,
)

Event = Annotated[
    ExecutionRequest | RepairRequest | ExecutionCommand | ExecutionResult | DeadLetter,
    Field(discriminator="kind"),
]

EVENT_TYPES: dict[str, type[Any]] = {
    "request": ExecutionRequest,
    "repair": RepairRequest,
    "execution": ExecutionCommand,
    "result": ExecutionResult,
    "deadletter": DeadLetter,
}

_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


class DecodeError(ValueError):
    """The body is not an event we understand. The message says why, in one line."""


def decode_event(body: bytes | str, *, fallback_request_id: str | None = None) -> Event:
    """Parse a body into its event model.

    A body without ``kind`` is read as a request, so other systems may publish a bare
    ``{"prompt": ...}`` or ``{"code": ...}``. A request without ``request_id`` gets
    ``fallback_request_id`` (the processor derives it from the event's position, so a
    redelivered event keeps the same id).
    """
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise DecodeError(f"body is a JSON {type(raw).__name__}, expected an object")
    raw.setdefault("kind", "request")
    if raw["kind"] == "claim_check":
        raise DecodeError(
            f"claim-check payload could not be fetched (missing or unreachable): {raw.get('ref')}"
        )
    if raw["kind"] == "request" and fallback_request_id and not raw.get("request_id"):
        raw["request_id"] = fallback_request_id
    if raw["kind"] not in EVENT_TYPES:
        raise DecodeError(f"unknown event kind {raw['kind']!r}")
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise DecodeError(_summarise(exc)) from None


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc or '<event>'}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "invalid event: " + "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def export_json_schemas(directory: Path) -> list[Path]:
    """Write one JSON Schema file per event type; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, model in EVENT_TYPES.items():
        path = directory / f"{kind}.schema.json"
        schema = model.model_json_schema(mode="serialization")
        schema["$id"] = f"https://llm-executor/schemas/{kind}.schema.json"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
