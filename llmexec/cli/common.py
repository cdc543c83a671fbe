"""What the request-taking commands share: reading requests, printing results, exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas import (
    DecodeError,
    ErrorInfo,
    ExecutionRequest,
    ExecutionResult,
    Limits,
    ResultStatus,
    Route,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_request_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("prompt", nargs="?", help="what to compute (needs an LLM key)")
    src = cmd.add_mutually_exclusive_group()
    src.add_argument("--code", help="Python code to run (skips generation, not validation)")
    src.add_argument("--code-file", type=Path, help="file with Python code to run")
    src.add_argument("--requests", type=Path, metavar="FILE.jsonl",
                     help="one request object per line; one result per line")
    cmd.add_argument("--route", choices=["auto", "light", "heavy"], default="auto")
    cmd.add_argument("--timeout", type=float, metavar="SECONDS", help="execution time limit")
    cmd.add_argument("--memory-mb", type=int, help="execution memory limit")
    cmd.add_argument("--inputs", help="JSON value handed to the code as `inputs`")
    cmd.add_argument("--request-id", help="idempotency key (default: generated)")
    cmd.add_argument("--json", action="store_true", help="print result events as JSON")


def report(requests: list[ExecutionRequest], early: dict[str, ExecutionResult],
           results: dict[str, ExecutionResult], *, as_json: bool) -> int:
    """Print one result per request, in request order; the exit status they add up to."""
    answered = {**early, **results}
    order = list(dict.fromkeys([r.request_id for r in requests] + list(early)))
    for rid in order:
        if rid in answered:
            print_result(answered[rid], as_json=as_json)
    every_answered = all(rid in answered for rid in order)
    ok = every_answered and all(answered[rid].status is ResultStatus.SUCCEEDED for rid in order)
    return EXIT_OK if ok else EXIT_FAILED


class UsageError(Exception):
    pass


def requests_from_args(
    args: argparse.Namespace,
) -> tuple[list[ExecutionRequest], dict[str, ExecutionResult]]:
    if args.requests is not None:
        if args.prompt:
            raise UsageError("give either PROMPT or --requests, not both")
        return requests_from_file(args.requests)
    code = args.code
    if args.code_file is not None:
        try:
            code = args.code_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(
                f"cannot read --code-file: {exc.strerror}: {args.code_file}"
            ) from None
    if code is not None and args.prompt:
        raise UsageError("give either PROMPT or code, not both")
    if code is None and not args.prompt:
        raise UsageError("nothing to run: give PROMPT, --code, --code-file or --requests")
    fields: dict[str, Any] = {"prompt": args.prompt, "code": code, "route": Route(args.route),
                              "limits": Limits(timeout_s=args.timeout, memory_mb=args.memory_mb)}
    if args.inputs is not None:
        try:
            fields["inputs"] = json.loads(args.inputs)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--inputs is not JSON: {exc}") from None
    if args.request_id:
        fields["request_id"] = args.request_id
    try:
        return [ExecutionRequest(**fields)], {}
    except ValidationError as exc:
        raise UsageError(str(DecodeError(exc.errors()[0]["msg"]))) from None


def requests_from_file(path: Any) -> tuple[list[ExecutionRequest], dict[str, ExecutionResult]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read --requests: {exc.strerror}: {path}") from None
    requests: list[ExecutionRequest] = []
    rejected: dict[str, ExecutionResult] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        raw: Any = None
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
            requests.append(ExecutionRequest.model_validate({**raw, "kind": "request"}))
        except (ValueError, ValidationError) as exc:
            rid = raw.get("request_id") if isinstance(raw, dict) else None
            rid = rid if isinstance(rid, str) and rid else f"line-{number}"
            message = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            rejected[rid] = ExecutionResult(
                request_id=rid, attempt=0, status=ResultStatus.REJECTED,
                error=ErrorInfo(code="invalid_request", message=f"line {number}: {message}"),
            )
    return requests, rejected


def print_result(result: ExecutionResult, *, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(result.model_dump_json() + "\n")
        return
    sys.stdout.write(result.stdout)
    if result.stderr:
        sys.stderr.write(result.stderr)
    if result.status is not ResultStatus.SUCCEEDED:
        reason = result.error.message if result.error else ""
        print(f"[{result.request_id}] {result.status.value}: {reason}", file=sys.stderr)
    sys.stdout.flush()
