"""``python -m executor_worker.heavy_main``: the heavy-executor entrypoint.

Reads one job from ``--job-dir`` (see executor_worker/heavy/contract.py), runs it in the
sandbox and prints ONE result record as the last line of stdout; exit status 0 whenever a
record about the *code* was written (a failing program is a result, not a pod failure), 3
when the sandbox itself could not run (the record says so too).

Sandbox settings: ``--sandbox-config`` (JSON, the local runner passes the executor's own, so
heavy work never gets a weaker sandbox than light work) or the ``SANDBOX_*`` environment (in
a pod). In a restricted pod there is no uid switching and no namespaces; the Job template
sets ``SANDBOX_ALLOW_DEGRADED=true`` because there the pod is the boundary (own resources,
no token, no secrets, deny-all network policy) and the sandbox adds what the kernel offers
(seccomp, Landlock, rlimits); the record lists the layers honestly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from executor_worker.heavy.contract import encode_record, failed, read_job_dir
from executor_worker.sandbox import SandboxJob, SandboxOutcome, SandboxSettings, build_sandbox
from pipeline.errors import ConfigError
from pipeline.observability.logging import configure_logging
from pipeline.settings import load

EXIT_SANDBOX_BROKEN = 3


async def run_job(job: SandboxJob, settings: SandboxSettings) -> SandboxOutcome:
    sandbox = build_sandbox(settings.model_copy(update={"concurrency": 1}))
    await sandbox.start()
    try:
        return await sandbox.run(job)
    finally:
        await sandbox.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="heavy-executor")
    parser.add_argument("--job-dir", type=Path, default=Path("/llmexec/job"))
    parser.add_argument("--sandbox-config", type=Path, default=None)
    args = parser.parse_args(argv)
    configure_logging("WARNING", "json")  # stderr; stdout carries only the record
    code = 0
    try:
        settings = (SandboxSettings(**json.loads(args.sandbox_config.read_text()))
                    if args.sandbox_config else load(SandboxSettings))
        job = read_job_dir(args.job_dir)
        outcome = asyncio.run(run_job(job, settings))
    except ConfigError as exc:  # SandboxRefused included: the host falls short
        outcome, code = failed("sandbox_error", f"sandbox unavailable: {exc}"), EXIT_SANDBOX_BROKEN
    except (OSError, ValueError, KeyError) as exc:
        outcome = failed("bad_job", f"cannot read the job: {exc!r}")
        code = EXIT_SANDBOX_BROKEN
    sys.stdout.write(encode_record(outcome) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
