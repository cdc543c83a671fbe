"""decode_event raises DecodeError and nothing else, whatever the body (the limits are in
schemas.codec's docstring)."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import MAX_BODY_BYTES, MAX_JSON_DEPTH, DecodeError, ExecutionRequest, decode_event
from schemas.codec import _parse, check_json_shape
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


# Strings with lone surrogates, backslashes, braces and brackets: what the text check reads.
_text = st.text(st.one_of(st.characters(exclude_categories=()), st.sampled_from("\\{}[]u")))
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=40)


def _bodies(value: object) -> list[bytes | str]:
    """One value as producers may send it: escaped or raw, str or bytes in every encoding
    json.loads reads, with a BOM, with surrogates encoded (as json.loads accepts them)."""
    out: list[bytes | str] = []
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False)):
        out += [text, text.encode("utf-8", "surrogatepass"), b"\xef\xbb\xbf" + text.encode(
            "utf-8", "surrogatepass"), text.encode("utf-16", "surrogatepass"),
            text.encode("utf-32-le", "surrogatepass")]
    return out


def _deep(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = [value]
    return value


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(_json_values, st.integers(MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH + 2).map(_deep)))
def test_the_text_check_passes_only_what_the_walk_passes(value: object) -> None:
    for body in _bodies(value):
        raw, plain = _parse(body)
        assert raw == json.loads(body) or raw != raw  # NaN aside, the same value
        if plain:
            check_json_shape(raw)  # raises if the text check let through what it refuses


@pytest.mark.parametrize("body", [
    b'{"code": "x", "inputs": {"a": "\\ud800"}}',  # an escape that makes a lone surrogate
    b'{"code": "x", "inputs": "\xed\xa0\x80"}',  # a surrogate encoded (surrogatepass)
    '{"code": "x", "inputs": "\ud800"}',  # a str body holding one
    ('{"code": "x", "inputs": ' + "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH + "}").encode(),
])
def test_bodies_the_text_check_leaves_to_the_walk_are_still_refused(body: bytes | str) -> None:
    assert _parse(body)[1] is False
    with pytest.raises(DecodeError, match=r"not valid Unicode|nested deeper"):
        decode_event(body)


def test_a_plain_body_needs_no_walk() -> None:
    body = json.dumps({"code": "print({'a': [1]})", "inputs": {"n": [1, 2]}}).encode()
    assert _parse(body) == (json.loads(body), True)
