"""Commands that talk to a bus other processes share: submit, results, deadletter."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

from consumers.deadletters import read_dead_letters, replay
from consumers.results import ResultFollower
from llmexec.cli.common import EXIT_OK, UsageError, print_result, report, requests_from_args
from llmexec.cli.progress import Progress, ResultTable
from llmexec.config import AppConfig, load_config
from llmexec.embedded import deadline
from pipeline.bus.factory import build_bus
from pipeline.bus.ports import Bus
from pipeline.observability.logging import configure_logging
from producers.client import RequestProducer

CLOCK_SKEW_S = 60
NEEDS_SHARED_BUS = (
    "needs a bus shared between processes: set EVENT_HUB_CONNECTION_STRING and "
    "STORAGE_CONNECTION_STRING (the embedded memory bus lives inside one process; "
    "use `llmexec run` for that)"
)


def _shared_bus() -> tuple[AppConfig, Bus]:
    cfg = load_config()
    configure_logging("WARNING" if cfg.log.log_level == "INFO" else cfg.log.log_level,
                      cfg.log.log_format)
    if cfg.bus.backend == "memory":
        raise UsageError(NEEDS_SHARED_BUS[0].upper() + NEEDS_SHARED_BUS[1:])
    return cfg, build_bus(cfg.bus)


async def submit_command(args: argparse.Namespace) -> int:
    requests, early = requests_from_args(args)
    cfg, bus = _shared_bus()
    try:
        # Answers are enqueued after we publish: start there (less clock skew), not at the
        # start of the hub's history, and without racing "latest" against the first answer.
        since = datetime.now(UTC) - timedelta(seconds=CLOCK_SKEW_S)
        follower = ResultFollower(bus, cfg.bus.hubs, start=since) if args.wait else None
        await RequestProducer(bus.publisher(), cfg.bus.hubs.requests).submit_many(requests)
        if follower is None:
            for req in requests:
                print(req.request_id)
            for result in early.values():
                print_result(result, as_json=args.json)
            return EXIT_OK if not early else 1
        try:
            with Progress(len(requests)) as progress:
                results = await follower.wait_for([r.request_id for r in requests],
                                                  timeout_s=deadline(cfg, requests),
                                                  on_result=progress.add)
        finally:
            await follower.close()
        return report(requests, early, results, as_json=args.json)
    finally:
        await bus.close()


async def results_command(args: argparse.Namespace) -> int:
    cfg, bus = _shared_bus()
    follower = ResultFollower(bus, cfg.bus.hubs, consumer_group=args.consumer_group,
                              start=args.start)
    wanted = set(args.request_id or [])
    seen = 0
    table = ResultTable(sys.stdout) if not args.json and sys.stdout.isatty() else None
    try:
        async for result in follower.results():
            if wanted and result.request_id not in wanted:
                continue
            if table is not None:
                table.add(result)  # a readable row per result on a terminal
            else:
                print_result(result, as_json=args.json)
            seen += 1
            if args.count and seen >= args.count:
                break
    finally:
        await follower.close()
        await bus.close()
    return EXIT_OK


async def deadletter_command(args: argparse.Namespace) -> int:
    cfg, bus = _shared_bus()
    try:
        records = await read_dead_letters(bus, cfg.bus.hubs, idle_s=args.idle)
        wanted = set(args.request_id or [])
        chosen = [r for r in records if not wanted or r.request_id in wanted]
        if args.action == "list":
            for record in chosen:
                print(record.model_dump_json() if args.json else
                      f"{record.source_hub}/{record.partition_id}@{record.sequence_number} "
                      f"request={record.request_id} attempts={record.attempts}: "
                      f"{record.reason.splitlines()[0]}")
            return EXIT_OK
        count = await replay(bus, chosen)
        print(f"replayed {count} event(s)", file=sys.stderr)
        return EXIT_OK
    finally:
        await bus.close()
