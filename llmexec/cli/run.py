"""``llmexec run``: requests through the whole pipeline in one process, embedded backends."""

from __future__ import annotations

import argparse
import os

from llmexec.cli.common import report, requests_from_args
from llmexec.cli.progress import Progress
from llmexec.config import load_config
from llmexec.embedded import run_embedded
from pipeline.observability import tracing
from pipeline.observability.logging import configure_logging


async def run_command(args: argparse.Namespace) -> int:
    cfg = load_config()
    level = cfg.log.log_level if "LOG_LEVEL" in os.environ else "WARNING"
    configure_logging(level, cfg.log.log_format)
    tracing.configure_tracing("llmexec-run")
    requests, early = requests_from_args(args)
    if requests and args.requests is not None:  # a batch: show progress on stderr
        with Progress(len(requests)) as progress:
            results = await run_embedded(cfg, requests, on_result=progress.add)
    else:
        results = await run_embedded(cfg, requests) if requests else {}
    return report(requests, early, results, as_json=args.json)
