"""``LocalJobRunner``: the heavy-executor entrypoint as a local subprocess (embedded default).

The same entrypoint and file contract as a Kubernetes Job, so both paths share one format.
The child gets a minimal environment (no secrets from the executor's), the executor's own
sandbox settings (heavy work is never less sandboxed than light), and a wall timeout of the
job's timeout plus a start-up grace, after which it is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import structlog

from executor_worker.heavy.contract import failed, parse_record, write_job_dir
from executor_worker.heavy.runner import JobCompletion
from executor_worker.sandbox import SandboxJob, SandboxOutcome, SandboxSettings
from executor_worker.sandbox.python_binary import real_python
from schemas import ExecutionCommand

log = structlog.get_logger(__name__)

#: Where ``executor_worker`` is importable from, for a child with an empty environment.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
ENTRYPOINT = ("-m", "executor_worker.heavy_main")


class LocalJobRunner:
    """Inline: ``submit`` runs the job to completion and returns its outcome."""

    def __init__(self, sandbox: SandboxSettings, *, concurrency: int = 1,
                 start_grace_s: float = 30.0, python: str | None = None) -> None:
        self._sandbox = sandbox
        self._slots = asyncio.Semaphore(concurrency)
        self._grace = start_grace_s
        # The environment's own interpreter (a venv's bin/python, not its symlink target),
        # so the entrypoint and its zygote see the packages the worker was installed with.
        self._python = python or real_python()
        self._started = False

    async def start(self) -> None:
        self._sandbox.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._started = True

    def ready(self) -> bool:
        return self._started

    def describe(self) -> dict[str, Any]:
        return {"runner": "local", "sandbox_level": self._sandbox.level}

    async def close(self) -> None:
        self._started = False

    async def completions(self) -> AsyncIterator[JobCompletion]:
        return
        yield  # an async generator that yields nothing: every job completes inline

    async def mark_reported(self, completion: JobCompletion) -> None:
        return None

    async def submit(self, command: ExecutionCommand, job: SandboxJob) -> SandboxOutcome:
        async with self._slots:
            job_dir = Path(tempfile.mkdtemp(prefix="heavy-", dir=self._sandbox.work_dir))
            try:
                try:
                    write_job_dir(job_dir, job)
                except ValueError as exc:
                    return failed("code_too_large", str(exc))
                config = job_dir / "sandbox.json"
                config.write_text(self._sandbox.model_dump_json())
                return await self._run(job_dir, config, job)
            finally:
                shutil.rmtree(job_dir, ignore_errors=True)

    async def _run(self, job_dir: Path, config: Path, job: SandboxJob) -> SandboxOutcome:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": _PACKAGE_ROOT}
        proc = await asyncio.create_subprocess_exec(
            self._python, *ENTRYPOINT, "--job-dir", str(job_dir),
            "--sandbox-config", str(config),
            env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(),
                                              timeout=job.timeout_s + self._grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return failed("timeout", f"heavy job still running after {job.timeout_s:g} s "
                          f"(+{self._grace:g} s start-up grace)", status="timed_out")
        outcome = parse_record(out.decode(errors="replace"))
        if outcome is None:
            tail = err.decode(errors="replace")[-2000:]
            log.warning("heavy.local_no_record", returncode=proc.returncode, stderr=tail)
            return failed("sandbox_error", "the heavy-executor entrypoint wrote no result "
                          f"(exit status {proc.returncode})", stderr=tail)
        return outcome
