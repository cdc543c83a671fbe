"""Strict validation against the official Kubernetes OpenAPI schemas, per minor.

The schemas are those shipped by the ``kubernetes-validate`` package (generated from each
release's OpenAPI; "strict": unknown fields are errors). This module only builds a validator
that reports *every* error with a Kubernetes-style field path, so the fake API can answer as
a real server does (422 with causes), and the manifest tests can say exactly what is wrong.

``SUPPORTED_MINORS`` is the range the project promises (render.MIN_MINOR up to the newest
schema shipped); a test checks the package really ships each of them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import importlib_resources
import jsonschema
import referencing
from kubernetes_validate import utils as kv

from executor_worker.heavy.render import MIN_MINOR


def shipped_minors() -> list[int]:
    """The 1.x minors whose strict schemas the installed kubernetes-validate ships."""
    return sorted({int(kv.major_minor(v).split(".")[1]) for v in kv.all_versions()})


SUPPORTED_MINORS = [m for m in shipped_minors() if m >= MIN_MINOR]


@dataclass(frozen=True)
class Cause:
    """One problem, shaped like a StatusCause of the API server."""

    reason: str  # FieldValueRequired, FieldValueNotSupported, FieldValueInvalid, ...
    field: str
    message: str
    #: Errors a real server reports while *decoding* (400 BadRequest, "strict decoding
    #: error"), before validation (422 Invalid): unknown fields and wrong JSON types.
    decoding: bool = False


def _schema_dir(minor: int) -> str:
    if minor not in shipped_minors():
        raise LookupError(f"kubernetes-validate ships no schemas for 1.{minor} "
                          f"(it has 1.{shipped_minors()[0]} to 1.{shipped_minors()[-1]})")
    return f"kubernetes-json-schema/v1.{minor}.0-local-strict"


def _load(path: str) -> Any:
    ref = importlib_resources.files("kubernetes_validate").joinpath(path)
    return json.loads(ref.read_text(encoding="utf-8"))


@lru_cache(maxsize=8)
def _definitions(minor: int) -> referencing.Resource[Any]:
    return referencing.Resource.from_contents(_load(f"{_schema_dir(minor)}/_definitions.json"))


@lru_cache(maxsize=256)
def _validator(minor: int, api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = f"{_schema_dir(minor)}/{kind.lower()}-{group_version}.json"
    try:
        schema = _load(path)
    except FileNotFoundError:
        raise LookupError(f"no schema for {kind} {api_version} in 1.{minor}") from None
    resource = referencing.Resource.from_contents(schema)
    registry = _definitions(minor) @ (resource @ referencing.Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def has_schema(minor: int, api_version: str, kind: str) -> bool:
    try:
        _validator(minor, api_version, kind)
    except LookupError:
        return False
    return True


def _field(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _join(base: str, name: str) -> str:
    return f"{base}.{name}" if base else name


def _causes(error: jsonschema.ValidationError) -> list[Cause]:
    # oneOf/anyOf (e.g. IntOrString): report the branch errors that got furthest.
    if error.context:
        deepest = max(len(e.absolute_path) for e in error.context)
        out: list[Cause] = []
        for sub in error.context:
            if len(sub.absolute_path) == deepest:
                out.extend(c for c in _causes(sub) if c not in out)
        return out
    at = _field(error.absolute_path)
    instance, value = error.instance, error.validator_value
    if error.validator == "required" and isinstance(instance, dict):
        return [Cause("FieldValueRequired", _join(at, name), "Required value")
                for name in value if name not in instance]
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(error.schema.get("properties") or {})
        return [Cause("FieldValueInvalid", _join(at, name), f'unknown field "{_join(at, name)}"',
                      decoding=True) for name in instance if name not in known]
    if error.validator == "type":
        return [Cause("FieldValueTypeInvalid", at, f'cannot unmarshal {type(instance).__name__} '
                      f'into field "{at}" of type {value}', decoding=True)]
    if error.validator == "enum":
        allowed = ", ".join(f'"{v}"' for v in value)
        return [Cause("FieldValueNotSupported", at,
                      f"Unsupported value: {instance!r}: supported values: {allowed}")]
    return [Cause("FieldValueInvalid", at, f"Invalid value: {instance!r}: {error.message}")]


def problems(obj: dict[str, Any], minor: int) -> list[Cause]:
    """Every way ``obj`` breaks the strict official schema of 1.``minor`` (none: valid).
    LookupError when the kind or the minor has no schema."""
    validator = _validator(minor, str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    out: list[Cause] = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.path))):
        out.extend(c for c in _causes(error) if c not in out)
    return out


def describe(causes: list[Cause]) -> str:
    return "; ".join(f"{c.field}: {c.message}" for c in causes)
