"""Turn how a job process ended into a status and a reason a person can read."""

from __future__ import annotations

import signal
from dataclasses import dataclass

from executor_worker.sandbox.api import OutcomeStatus, SandboxJob


@dataclass(frozen=True)
class Verdict:
    status: OutcomeStatus
    exit_code: int | None
    signal: int | None
    reason_code: str | None
    reason: str | None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def classify(returncode: int | None, timed_out: bool, stderr: str, job: SandboxJob) -> Verdict:
    """``returncode`` as asyncio reports it: negative for a signal."""
    if timed_out:
        return Verdict(
            "timed_out", None, None, "timeout",
            f"wall-clock timeout: still running after {job.timeout_s:g} s",
        )
    if returncode is None:
        return Verdict("failed", None, None, "sandbox_error", "process did not report an exit")
    if returncode < 0:
        signum = -returncode
        if signum == signal.SIGXCPU:
            return Verdict(
                "timed_out", None, signum, "cpu_limit",
                f"CPU time limit exceeded ({job.cpu_s or int(job.timeout_s) + 1} s)",
            )
        if signum == signal.SIGXFSZ:
            return Verdict(
                "failed", None, signum, "file_size_limit",
                f"file size limit exceeded ({job.max_file_bytes} bytes)",
            )
        return Verdict(
            "failed", None, signum, "killed",
            f"killed by signal {signum} ({_signal_name(signum)})",
        )
    if returncode == 0:
        return Verdict("succeeded", 0, None, None, None)
    tail = stderr[-4096:]
    if "MemoryError" in tail:
        return Verdict(
            "failed", returncode, None, "memory_limit",
            f"memory limit exceeded ({job.memory_mb} MiB)",
        )
    if "[Errno 27] File too large" in tail:
        # CPython ignores SIGXFSZ, so RLIMIT_FSIZE surfaces as an EFBIG exception.
        return Verdict(
            "failed", returncode, None, "file_size_limit",
            f"file size limit exceeded ({job.max_file_bytes} bytes)",
        )
    last = next((ln for ln in reversed(tail.splitlines()) if ln.strip()), "")
    return Verdict(
        "failed", returncode, None, "nonzero_exit",
        f"exited with status {returncode}" + (f": {last.strip()[:300]}" if last else ""),
    )
