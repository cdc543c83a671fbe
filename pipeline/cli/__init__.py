"""``llmexec``: one console script, thin subcommands.

    llmexec run [PROMPT] [--code TEXT | --code-file PATH | --requests FILE.jsonl] [--json]
    llmexec worker llm|executor [--port N]
    llmexec schemas export DIR

Exit status: 0 success, 1 a request did not succeed (or a service failed), 2 usage or
configuration error (one line on stderr naming the variable).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from pipeline.errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmexec", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run requests through the whole pipeline, in this process")
    run.add_argument("prompt", nargs="?", help="what to compute (needs an LLM key)")
    src = run.add_mutually_exclusive_group()
    src.add_argument("--code", help="Python code to run (skips generation, not validation)")
    src.add_argument("--code-file", type=Path, help="file with Python code to run")
    src.add_argument("--requests", type=Path, metavar="FILE.jsonl",
                     help="one request object per line; one result per line")
    run.add_argument("--route", choices=["auto", "light", "heavy"], default="auto")
    run.add_argument("--timeout", type=float, metavar="SECONDS", help="execution time limit")
    run.add_argument("--memory-mb", type=int, help="execution memory limit")
    run.add_argument("--inputs", help="JSON value handed to the code as `inputs`")
    run.add_argument("--request-id", help="idempotency key (default: generated)")
    run.add_argument("--json", action="store_true", help="print result events as JSON")

    worker = sub.add_parser("worker", help="run a worker service until SIGTERM")
    worker.add_argument("kind", choices=["llm", "executor"])
    worker.add_argument("--port", type=int, help="probe/metrics port (llm 8000, executor 8001)")

    schemas = sub.add_parser("schemas", help="the event contract")
    schemas_sub = schemas.add_subparsers(dest="schemas_command", required=True)
    export = schemas_sub.add_parser("export", help="write one JSON Schema file per event type")
    export.add_argument("directory", type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            from pipeline.cli.run import run_command

            return asyncio.run(run_command(args, parser))
        if args.command == "worker":
            from pipeline.cli.worker import worker_command

            return asyncio.run(worker_command(args.kind, args.port))
        if args.command == "schemas":
            from schemas import export_json_schemas

            for path in export_json_schemas(args.directory):
                print(path)
            return EXIT_OK
    except ConfigError as exc:
        print(f"llmexec: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
