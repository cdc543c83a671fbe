"""``llmexec status``: the backlog per hub and consumer group, from the checkpoint blobs
KEDA reads, and the dead letters of the last hour. A table on a TTY, ``--json`` for
machines (one JSON document on stdout)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import TextIO

from consumers.backlog import Status, backlog_status
from llmexec.cli.common import EXIT_OK, UsageError
from llmexec.cli.shared_bus import NEEDS_SHARED_BUS
from llmexec.config import AppConfig, load_config
from pipeline.bus.factory import build_bus
from pipeline.observability.logging import configure_logging

#: A short-lived reader claims the dead-letter partitions quickly (the service default is
#: a claim per 10 s round).
STATUS_BALANCING_INTERVAL_S = 0.5


def add_status_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--group", action="append", metavar="HUB=GROUP",
                     help="a consumer group to report (repeatable; default: the workers' "
                          "groups on the requests and executions hubs)")
    cmd.add_argument("--window", type=float, default=3600.0, metavar="SECONDS",
                     help="count dead letters enqueued this long ago (default 3600)")
    cmd.add_argument("--deadletter-group", default="llmexec-status",
                     help="consumer group this command reads the dead-letter hub with "
                          "(on Event Hubs it must exist)")
    cmd.add_argument("--json", action="store_true", help="print one JSON document")


def groups_from_args(cfg: AppConfig, given: list[str] | None) -> list[tuple[str, str]]:
    if not given:
        from llmexec import assembly  # the worker wiring only when its defaults are needed

        hubs = cfg.bus.hubs
        return [(hubs.requests, cfg.service.consumer_group or assembly.LLM_GROUP),
                (hubs.executions, cfg.service.consumer_group or assembly.EXECUTOR_GROUP)]
    pairs = []
    for item in given:
        hub, sep, group = item.partition("=")
        if not sep or not hub or not group:
            raise UsageError(f"--group wants HUB=GROUP, got {item!r}")
        pairs.append((hub, group))
    return pairs


async def status_command(args: argparse.Namespace) -> int:
    cfg = load_config()
    configure_logging("WARNING" if cfg.log.log_level == "INFO" else cfg.log.log_level,
                      cfg.log.log_format)
    if cfg.bus.backend == "memory":
        raise UsageError(NEEDS_SHARED_BUS[0].upper() + NEEDS_SHARED_BUS[1:])
    groups = groups_from_args(cfg, args.group)
    bus = build_bus(cfg.bus.model_copy(update={
        "eventhub_load_balancing_interval_s": min(cfg.bus.eventhub_load_balancing_interval_s,
                                                  STATUS_BALANCING_INTERVAL_S)}))
    try:
        status = await backlog_status(bus, cfg.bus.hubs, groups, window_s=args.window,
                                      consumer_group=args.deadletter_group)
    finally:
        await bus.close()
    if args.json:
        sys.stdout.write(json.dumps(status.to_json(), indent=2) + "\n")
    else:
        print_status(status, sys.stdout)
    return EXIT_OK


def print_status(status: Status, out: TextIO) -> None:
    """A rich table on a terminal; the same columns as plain text elsewhere."""
    headers = ["hub", "group", "partition", "last enqueued", "checkpoint", "lag", "owner",
               "owner age"]
    rows = [[g.hub, g.consumer_group, p.partition_id, str(p.last_enqueued_sequence_number),
             "-" if p.checkpoint_sequence_number is None else str(p.checkpoint_sequence_number),
             str(p.lag), p.owner or "-",
             "-" if p.owner_age_s is None else f"{p.owner_age_s:.0f}s"]
            for g in status.groups for p in g.partitions]
    window = f"{status.dead_letters_window_s / 60:.0f} min"
    dead = [f"{hub}: {cause} x{n}" for (hub, cause), n in sorted(status.dead_letters.items())]
    total = sum(status.dead_letters.values())
    if out.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"backlog at {datetime.now(UTC):%H:%M:%S} UTC")
        for h in headers:
            table.add_column(h, justify="right" if h in ("lag", "checkpoint",
                                                         "last enqueued") else "left")
        for row in rows:
            table.add_row(*row, style="bold red" if row[5] != "0" else None)
        console = Console(file=out)
        console.print(table)
        for g in status.groups:
            console.print(f"[bold]{g.hub}/{g.consumer_group}[/]: lag {g.lag}, "
                          f"owners {', '.join(g.owners) or 'none'}")
        console.print(f"dead letters in the last {window}: {total}"
                      + ("".join(f"\n  {d}" for d in dead)))
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip() + "\n")
    for row in rows:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")
    for g in status.groups:
        out.write(f"{g.hub}/{g.consumer_group}: lag {g.lag}, owners "
                  f"{', '.join(g.owners) or 'none'}\n")
    out.write(f"dead letters in the last {window}: {total}\n")
    for d in dead:
        out.write(f"  {d}\n")
