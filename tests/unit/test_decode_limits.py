"""decode_event raises DecodeError and nothing else, whatever the body (the limits are in
schemas.codec's docstring)."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import MAX_BODY_BYTES, MAX_JSON_DEPTH, DecodeError, ExecutionRequest, decode_event
from tests.contract.test_every_event_ends import hostile_bodies


@settings(max_examples=400, deadline=None)
@given(body=st.one_of(st.binary(), hostile_bodies, st.text().map(str.encode)))
def test_decode_raises_only_decode_error(body: bytes) -> None:
    try:
        decode_event(body, fallback_request_id="fallback")
    except DecodeError as exc:
        assert str(exc) and "\n" not in str(exc)


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, sys.getrecursionlimit() * 4, 500_000])
def test_nesting_deeper_than_the_limit_is_a_decode_error(depth: int) -> None:
    inner = "[" * depth + "]" * depth
    with pytest.raises(DecodeError, match="nest"):
        decode_event(f'{{"code": "x", "inputs": {inner}}}'.encode())


def test_nesting_up_to_the_limit_is_fine() -> None:
    depth = MAX_JSON_DEPTH - 1  # the request object itself is one level
    inner = "[" * depth + "]" * depth
    event = decode_event(f'{{"code": "x", "inputs": {inner}}}'.encode())
    assert isinstance(event, ExecutionRequest)


@pytest.mark.parametrize(("body", "match"), [
    (b'{"code": "x", "inputs": 1' + b"0" * 5000 + b"}", "not JSON"),
    (b'{"code": "\\ud800"}', "code: string is not valid Unicode"),
    (b'{"kind": ["request"]}', "kind: expected a string"),
    (b'{"kind": "claim_check", "ref": {"a": 1}}', "claim-check"),
    (b" " * (MAX_BODY_BYTES + 1), "exceeds"),
])
def test_bodies_the_parser_or_the_models_would_choke_on(body: bytes, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode_event(body)


def test_a_plain_request_still_decodes() -> None:
    event = decode_event(json.dumps({"code": "print(1)", "inputs": {"a": [1, 2]}}).encode())
    assert isinstance(event, ExecutionRequest) and event.inputs == {"a": [1, 2]}
