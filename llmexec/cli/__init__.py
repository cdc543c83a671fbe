"""``llmexec``: one console script, thin subcommands.

    llmexec run [PROMPT] [--code TEXT | --code-file PATH | --requests FILE.jsonl] [--json]
    llmexec submit [same request options] [--wait]      (Event Hubs)
    llmexec results follow [--request-id ID] [--json]   (Event Hubs)
    llmexec deadletter list|replay [--request-id ID]    (Event Hubs)
    llmexec status [--group HUB=GROUP] [--json]        (Event Hubs)
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
from typing import NoReturn

from llmexec.cli.common import UsageError, add_request_arguments
from pipeline.errors import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line naming the option (``--help`` still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="llmexec", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run requests through the whole pipeline, in this process")
    add_request_arguments(run)

    submit = sub.add_parser("submit", help="publish requests to the requests hub (Event Hubs)")
    add_request_arguments(submit)
    submit.add_argument("--wait", action="store_true", help="wait for and print the results")

    results = sub.add_parser("results", help="follow the results hub, deduplicated")
    results.add_argument("action", choices=["follow"])
    results.add_argument("--request-id", action="append", help="only these (repeatable)")
    results.add_argument("--count", type=int, help="stop after this many results")
    results.add_argument("--from", dest="start", choices=["earliest", "latest"],
                         default="latest")
    results.add_argument("--consumer-group", default="results-follower")
    results.add_argument("--json", action="store_true")

    dead = sub.add_parser("deadletter", help="inspect or replay the dead-letter hub")
    dead.add_argument("action", choices=["list", "replay"])
    dead.add_argument("--request-id", action="append", help="only these (repeatable)")
    dead.add_argument("--idle", type=float, default=3.0,
                      help="stop reading after this many quiet seconds")
    dead.add_argument("--json", action="store_true")

    from llmexec.cli.status import add_status_arguments  # observability: llmexec status

    add_status_arguments(sub.add_parser(
        "status", help="backlog per hub and consumer group, dead letters (Event Hubs)"))

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
            from llmexec.cli.run import run_command

            return asyncio.run(run_command(args))
        if args.command in ("submit", "results", "deadletter"):
            from llmexec.cli import shared_bus

            command = getattr(shared_bus, f"{args.command}_command")
            return int(asyncio.run(command(args)))
        if args.command == "status":
            from llmexec.cli.status import status_command

            return asyncio.run(status_command(args))
        if args.command == "worker":
            from llmexec.cli.worker import worker_command

            return asyncio.run(worker_command(args.kind, args.port))
        if args.command == "schemas":
            from schemas import export_json_schemas

            for path in export_json_schemas(args.directory):
                print(path)
            return EXIT_OK
    except ConfigError as exc:
        print(f"llmexec: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"llmexec {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
