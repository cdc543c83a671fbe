"""What the request-taking commands share: reading requests, printing results, exit codes."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas import (
    MAX_JSON_DEPTH,
    DecodeError,
    ErrorInfo,
    ExecutionRequest,
    ExecutionResult,
    ResultStatus,
    check_json_shape,
    decode_event,
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


#: Where each request field comes from on the command line, for one-line errors.
OPTION_OF_FIELD = {"prompt": "PROMPT", "code": "--code", "route": "--route",
                   "limits": "--timeout/--memory-mb", "limits.timeout_s": "--timeout",
                   "limits.memory_mb": "--memory-mb", "inputs": "--inputs",
                   "request_id": "--request-id"}


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
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise UsageError(f"cannot read --code-file: {why}: {args.code_file}") from None
    if code is not None and args.prompt:
        raise UsageError("give either PROMPT or code, not both")
    if code is None and not args.prompt:
        raise UsageError("nothing to run: give PROMPT, --code, --code-file or --requests")
    fields: dict[str, Any] = {"prompt": args.prompt, "code": code, "route": args.route,
                              "limits": {"timeout_s": args.timeout, "memory_mb": args.memory_mb}}
    if args.inputs is not None:
        try:
            fields["inputs"] = json.loads(args.inputs)
            check_json_shape(fields["inputs"], MAX_JSON_DEPTH - 1)
        except RecursionError:
            raise UsageError(f"--inputs: nested deeper than {MAX_JSON_DEPTH - 1} levels") from None
        except DecodeError as exc:
            raise UsageError(f"--inputs: {exc}") from None
        except ValueError as exc:
            raise UsageError(f"--inputs is not JSON: {exc}") from None
    if args.request_id:
        fields["request_id"] = args.request_id
    try:
        return [ExecutionRequest(**fields)], {}
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        option = OPTION_OF_FIELD.get(loc) or OPTION_OF_FIELD.get(loc.split(".")[0]) or "request"
        shown = f" (got {err['input']!r})" if option.startswith("--") and loc in OPTION_OF_FIELD \
            and not isinstance(err["input"], dict) else ""
        raise UsageError(f"{option}: {err['msg']}{shown}"[:300]) from None


def requests_from_file(path: Any) -> tuple[list[ExecutionRequest], dict[str, ExecutionResult]]:
    """Every non-blank line is a request or a ``rejected`` result whose reason starts with
    ``line N:`` and says which field is wrong and why. The rejected result carries the
    line's own request id when that id is valid and not used before, else ``line-N``; a
    request id seen before is rejected too (one answer per id)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --requests: {exc.strerror}: {path}") from None
    requests: list[ExecutionRequest] = []
    rejected: dict[str, ExecutionResult] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            request = _request_from_line(line)
            if request.request_id in first_line:
                raise DecodeError(f"request_id: {request.request_id!r} is already used on "
                                  f"line {first_line[request.request_id]}")
        except DecodeError as exc:
            own = _own_request_id(line)
            rid = own if own and own not in first_line else f"line-{number}"
            first_line.setdefault(rid, number)
            rejected[rid] = ExecutionResult(
                request_id=rid, attempt=0, status=ResultStatus.REJECTED,
                error=ErrorInfo(code="invalid_request", message=f"line {number}: {exc}"),
            )
            continue
        first_line[request.request_id] = number
        requests.append(request)
    return requests, rejected


def _own_request_id(line: bytes) -> str | None:
    try:
        raw = json.loads(line)
    except (ValueError, RecursionError):
        return None
    rid = raw.get("request_id") if isinstance(raw, dict) else None
    return rid if isinstance(rid, str) and _REQUEST_ID.fullmatch(rid) else None


#: schemas.base.RequestId, to name a rejected line after its own (valid) id.
_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


def _request_from_line(line: bytes) -> ExecutionRequest:
    event = decode_event(line)
    if not isinstance(event, ExecutionRequest):
        raise DecodeError(f"kind: expected 'request', got {event.kind!r}")
    return event


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
