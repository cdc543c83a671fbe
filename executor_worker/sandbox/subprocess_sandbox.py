"""The minimum sandbox: a fresh interpreter per job, with rlimits, an empty environment,
its own session, a wall timeout and capped output.

This is the floor every host provides; the zygote sandbox builds the stronger layers
(namespaces, Landlock, seccomp, uid) on top. It is also the baseline of bench/sandbox.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from executor_worker.sandbox.api import SandboxJob, SandboxOutcome
from executor_worker.sandbox.jobfiles import collect_artifacts, write_job_files
from executor_worker.sandbox.output import CappedBuffer, drain
from executor_worker.sandbox.verdict import classify

#: Runs inside the child: load inputs, run the user's code as __main__.
BOOTSTRAP = (
    "import json,sys\n"
    "with open('inputs.json') as f: inputs = json.load(f)\n"
    "src = open('main.py').read()\n"
    "del json, sys, f\n"
    "exec(compile(src, 'main.py', 'exec'), {'__name__': '__main__', 'inputs': inputs,"
    " '__builtins__': __builtins__})\n"
)


class SubprocessSandbox:
    """One ``python -I`` process per job. Layers: process, session, rlimits, empty-env, timeout."""

    def __init__(self, work_root: Path | None = None, python: str = sys.executable) -> None:
        self._root = work_root or Path(tempfile.gettempdir()) / "llmexec-jobs"
        self._python = python
        self._started = False

    async def start(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._started = True

    def ready(self) -> bool:
        return self._started

    def layers(self) -> tuple[str, ...]:
        return ("process", "session", "rlimits", "empty-env", "timeout", "output-cap")

    def notes(self) -> dict[str, str]:
        reason = "not used by the subprocess sandbox (SANDBOX_KIND=subprocess)"
        return {layer: reason for layer in ("zygote", "netns", "uid", "landlock-fs", "seccomp")}

    async def close(self) -> None:
        self._started = False

    async def run(self, job: SandboxJob) -> SandboxOutcome:
        job_dir = Path(tempfile.mkdtemp(prefix=f"job-{job.job_id[:40]}-", dir=self._root))
        try:
            write_job_files(job_dir, job)
            return await self._run_in(job_dir, job)
        finally:
            shutil.rmtree(job_dir, ignore_errors=True)

    async def _run_in(self, job_dir: Path, job: SandboxJob) -> SandboxOutcome:
        limits = _rlimits(job)
        start = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            self._python, "-I", "-c", BOOTSTRAP,
            cwd=job_dir,
            env={},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=lambda: _apply_rlimits(limits),
        )
        out, err = CappedBuffer(job.max_output_bytes), CappedBuffer(job.max_output_bytes)
        assert proc.stdout is not None and proc.stderr is not None
        readers = asyncio.gather(drain(proc.stdout, out), drain(proc.stderr, err))
        timed_out = False
        try:
            await asyncio.wait_for(proc.wait(), timeout=job.timeout_s)
        except TimeoutError:
            timed_out = True
        finally:
            # Kill the whole session: background children die with the job.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        try:
            await asyncio.wait_for(readers, timeout=2.0)
        except TimeoutError:
            readers.cancel()  # a grandchild escaped the group and holds the pipe; stop reading
        duration_ms = (time.monotonic() - start) * 1000
        verdict = classify(proc.returncode, timed_out, err.text(), job)
        return SandboxOutcome(
            status=verdict.status,
            exit_code=verdict.exit_code,
            signal=verdict.signal,
            reason_code=verdict.reason_code,
            reason=verdict.reason,
            stdout=out.text(),
            stderr=err.text(),
            stdout_truncated=out.truncated,
            stderr_truncated=err.truncated,
            duration_ms=duration_ms,
            artifacts=collect_artifacts(job_dir, job),
            layers=self.layers(),
        )


def _rlimits(job: SandboxJob) -> list[tuple[int, int]]:
    cpu = job.cpu_s or int(job.timeout_s) + 1
    mem = job.memory_mb * 1024 * 1024
    return [
        (resource.RLIMIT_AS, mem),
        (resource.RLIMIT_CPU, cpu),
        (resource.RLIMIT_FSIZE, job.max_file_bytes),
        (resource.RLIMIT_NOFILE, 64),
        (resource.RLIMIT_CORE, 0),
    ]


def _apply_rlimits(limits: list[tuple[int, int]]) -> None:
    for which, value in limits:
        resource.setrlimit(which, (value, value))
