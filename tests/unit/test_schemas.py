"""The event contract: round trips, forward compatibility, clear decode errors, export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import (
    EVENT_TYPES,
    DeadLetter,
    DecodeError,
    ExecutionCommand,
    ExecutionRequest,
    ExecutionResult,
    RepairRequest,
    decode_event,
    export_json_schemas,
)

ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:\-]{0,40}\Z")
text = st.text(max_size=200)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=10,
)
code = st.text(min_size=1, max_size=200).filter(lambda s: s.strip() != "")

requests = st.builds(ExecutionRequest, request_id=ids, code=code, inputs=json_values,
                     metadata=st.dictionaries(st.text(max_size=8), json_values, max_size=3))
commands = st.builds(ExecutionCommand, request_id=ids, code=code,
                     attempt=st.integers(1, 10), inputs=json_values)
results = st.builds(ExecutionResult, request_id=ids, attempt=st.integers(0, 10),
                    status=st.sampled_from(["succeeded", "failed", "timed_out", "rejected"]),
                    stdout=text, stderr=text, exit_code=st.none() | st.integers(-255, 255),
                    duration_ms=st.floats(0, 1e7))
repairs = st.builds(RepairRequest, request_id=ids, command=commands, failure=results)
dead_letters = st.builds(DeadLetter, reason=text, source_hub=ids, partition_id=ids,
                         offset=st.integers(0, 10**12).map(str),
                         sequence_number=st.integers(0, 10**12),
                         body_b64=st.binary(max_size=100).map(lambda b: __import__("base64").b64encode(b).decode()))
any_event = st.one_of(requests, commands, results, repairs, dead_letters)


@settings(max_examples=150, deadline=None)
@given(any_event)
def test_every_event_round_trips_through_bytes(event: Any) -> None:
    assert decode_event(event.to_json_bytes()) == event


@settings(max_examples=50, deadline=None)
@given(any_event, st.dictionaries(st.text(min_size=1, max_size=10).map(lambda s: "x_" + s),
                                  json_values, min_size=1, max_size=3))
def test_unknown_fields_from_newer_producers_are_tolerated(event: Any, extra: dict[str, Any]) -> None:
    raw = json.loads(event.to_json_bytes())
    raw.update(extra)
    raw["schema_version"] = 2
    decoded = decode_event(json.dumps(raw).encode())
    assert type(decoded) is type(event)
    assert decoded.model_dump(exclude={"schema_version"}) == event.model_dump(exclude={"schema_version"})


def test_bare_request_without_kind_or_id_gets_the_fallback_id() -> None:
    event = decode_event(b'{"code": "print(1)"}', fallback_request_id="pos-1")
    assert isinstance(event, ExecutionRequest)
    assert event.request_id == "pos-1"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "JSON list"),
        (b'{"kind": "nope"}', "unknown event kind"),
        (b'{"kind": "request"}', "non-empty 'prompt' or 'code'"),
        (b'{"kind": "result", "request_id": "r"}', "status"),
        (b'{"code": "x", "request_id": "has space"}', "request_id"),
    ],
)
def test_malformed_bodies_raise_one_clear_decode_error(body: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        decode_event(body)


def test_producers_cannot_build_invalid_events() -> None:
    with pytest.raises(ValidationError):
        ExecutionRequest(prompt="  ")
    with pytest.raises(ValidationError):
        ExecutionCommand(request_id="r", code="print(1)", attempt=0)
    with pytest.raises(ValidationError):
        ExecutionResult(request_id="r", status="done")  # type: ignore[arg-type]


def test_output_ids_are_derived_not_random() -> None:
    a = ExecutionResult(request_id="r1", attempt=2, status="succeeded")  # type: ignore[arg-type]
    b = ExecutionResult(request_id="r1", attempt=2, status="failed")  # type: ignore[arg-type]
    c = ExecutionResult(request_id="r1", attempt=3, status="failed")  # type: ignore[arg-type]
    assert a.event_id == b.event_id != c.event_id


def test_export_writes_one_json_schema_per_event_type(tmp_path: Path) -> None:
    paths = export_json_schemas(tmp_path)
    assert sorted(p.name for p in paths) == sorted(f"{k}.schema.json" for k in EVENT_TYPES)
    request_schema = json.loads((tmp_path / "request.schema.json").read_text())
    assert "request_id" in request_schema["properties"]
    assert request_schema["properties"]["kind"]["const"] == "request"
