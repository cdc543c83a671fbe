"""Bytes <-> events. One place decides what a body means.

Limits every body is held to before any model sees it (a hostile producer must not be
able to hurt the worker that reads its event):

- ``MAX_BODY_BYTES`` (16 MiB): a body above it is refused unread. Event Hubs caps an event
  at 1 MB; larger payloads arrive through the claim check, which this bounds too.
- ``MAX_JSON_DEPTH`` (64): objects and arrays nested deeper are refused. Checked without
  recursion (a nesting too deep for the parser itself is refused the same way).
- JSON numbers the parser refuses (integers over 4300 digits), strings that are not
  valid Unicode (lone surrogates, which could never be encoded again on the way out) and
  a ``kind`` that is not a string are refused.

Whatever the body holds, :func:`decode_event` returns an event or raises
:class:`DecodeError` — nothing else.
"""

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

MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_JSON_DEPTH = 64


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
        return _decode(body, fallback_request_id)
    except DecodeError:
        raise
    except RecursionError:
        where = _too_deep_at(body, MAX_JSON_DEPTH)
        raise DecodeError(f"{where}: nested deeper than {MAX_JSON_DEPTH} levels") from None
    except Exception as exc:  # never let a body take the worker down: say what it was
        raise DecodeError(f"undecodable body ({type(exc).__name__}: {exc})"[:500]) from None


def _decode(body: bytes | str, fallback_request_id: str | None) -> Event:
    if len(body) > MAX_BODY_BYTES:
        raise DecodeError(f"body of {len(body)} bytes exceeds the {MAX_BODY_BYTES}-byte limit")
    try:
        raw, plain = _parse(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, over-long integers
        raise DecodeError(f"body is not JSON: {exc}") from None
    if not plain:
        check_json_shape(raw)
    if not isinstance(raw, dict):
        raise DecodeError(f"body is a JSON {type(raw).__name__}, expected an object")
    raw.setdefault("kind", "request")
    kind = raw["kind"]
    if not isinstance(kind, str):
        raise DecodeError(f"kind: expected a string, got a JSON {type(kind).__name__}")
    if kind == "claim_check":
        ref = str(raw.get("ref"))[:300]
        raise DecodeError(
            f"claim-check payload could not be fetched (missing or unreachable): {ref}"
        )
    if kind == "request" and fallback_request_id and not raw.get("request_id"):
        raw["request_id"] = fallback_request_id
    if kind not in EVENT_TYPES:
        raise DecodeError(f"unknown event kind {kind[:100]!r}")
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise DecodeError(_summarise(exc)) from None


def _parse(body: bytes | str) -> tuple[Any, bool]:
    """The body's JSON value, and True if the text alone shows that check_json_shape would
    pass it (most bodies: the walk was a fifth of a no-op event's handling).

    It would if no string of the value can hold a lone surrogate, none being in the text
    (a UTF-8 body decoded strictly has none) and no ``\\u`` escape either, which could make
    one; and if the text opens at most ``MAX_JSON_DEPTH`` objects and arrays in all (each
    level of nesting opens one; those inside strings are counted too). Any other body,
    UTF-16 and UTF-32 ones and a BOM included, is parsed as json.loads parses bytes and
    walked."""
    text: str | None = None
    if isinstance(body, str):
        text = body
    elif json.detect_encoding(body) == "utf-8":
        try:
            text = body.decode("utf-8")  # strict: an encoded surrogate is an error here
        except UnicodeDecodeError:
            text = None
    if text is None:
        return json.loads(body), False
    raw = json.loads(text)
    if "\\u" in text or text.count("{") + text.count("[") > MAX_JSON_DEPTH:
        return raw, False
    if isinstance(body, str) and not _valid_text(text):
        return raw, False
    return raw, True


def check_json_shape(value: object, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse a parsed JSON value nested deeper than ``max_depth`` or holding strings
    that are not valid Unicode. Iterative: the value's own depth cannot exhaust the stack.

    Every body the text check of :func:`_parse` cannot clear goes through here: a first
    walk only answers yes or no (building each field's path cost ~8 us of the processor's
    ~30 us per event); a refused value is walked again to say where."""
    if not _shape_ok(value, max_depth):
        _refuse_shape(value, max_depth)


def _shape_ok(value: object, max_depth: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not _valid_text(item):
                return False
        elif isinstance(item, dict):
            if depth > max_depth:
                return False
            for key, child in item.items():
                if not _valid_text(key):
                    return False
                if isinstance(child, (str, dict, list)):
                    stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > max_depth:
                return False
            stack.extend((child, depth + 1) for child in item
                         if isinstance(child, (str, dict, list)))
    return True


def _valid_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _refuse_shape(value: object, max_depth: int) -> None:
    """The walk that names the refused field; raises DecodeError."""
    stack: list[tuple[object, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            _check_text(item, where)
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > max_depth:
            raise DecodeError(f"{(where or '<body>')[:120]}: nested deeper than {max_depth} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                _check_text(key, where)
                stack.append((child, depth + 1, f"{where}.{key[:40]}" if where else key[:40]))
        else:
            stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(item))
    raise DecodeError("<body>: not a JSON value this service accepts")  # _shape_ok said no


def _too_deep_at(body: bytes | str, max_depth: int) -> str:
    """Where in a body too deep for the parser the nesting passes ``max_depth`` (the
    field path, shortened): a plain scan, no recursion."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    path: list[str | int | None] = []
    in_string = escaped = False
    chars: list[str] = []
    last = ""
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string, last = False, "".join(chars)
            else:
                chars.append(ch)
        elif ch == '"':
            in_string, chars = True, []
        elif ch == ":" and path and not isinstance(path[-1], int):
            path[-1] = last[:40]
        elif ch in "{[":
            path.append(None if ch == "{" else 0)
            if len(path) > max_depth:
                break
        elif ch in "}]" and path:
            path.pop()
        elif ch == "," and path and isinstance(path[-1], int):
            path[-1] += 1
    shown = ""
    for part in path[:-1][:4]:
        if isinstance(part, int):
            shown += f"[{part}]"
        elif part is not None:
            shown += f".{part}" if shown else part
    return (shown + ("..." if len(path) > 5 else "")) or "<body>"


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = where.encode("utf-8", "backslashreplace").decode()[:120] or "<body>"
        raise DecodeError(f"{shown}: string is not valid Unicode (lone surrogate)") from None


def _summarise(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        parts_of_loc = list(err["loc"])
        if parts_of_loc and parts_of_loc[0] in EVENT_TYPES:  # the union's tag, not a field
            parts_of_loc = parts_of_loc[1:]
        loc = ".".join(str(p) for p in parts_of_loc)
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
