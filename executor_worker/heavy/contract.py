"""The heavy-executor contract, shared by the entrypoint and both runners.

In: a directory holding ``main.py`` (the code), ``inputs.json`` and ``job.json`` (job id and
limits). Out: the entrypoint's stdout ends with ONE line ``LLMEXEC-RESULT <json>``, the
:class:`SandboxOutcome` as JSON. Logs go to stderr; a pod log interleaves both streams, so
readers take the last line carrying the marker. User code never writes to that stdout (the
sandbox captures its output into the record), so it cannot forge the line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from executor_worker.sandbox.api import SandboxJob, SandboxOutcome

MARKER = "LLMEXEC-RESULT "
CODE_FILE, INPUTS_FILE, JOB_FILE = "main.py", "inputs.json", "job.json"
#: The largest code a heavy job takes (a ConfigMap holds at most 1 MiB in all).
MAX_CODE_BYTES = 256 * 1024

_OUTCOME = TypeAdapter(SandboxOutcome)


def job_files(job: SandboxJob) -> dict[str, str]:
    """The files of one job, by name (the ConfigMap's data, or a local directory)."""
    if len(job.code.encode()) > MAX_CODE_BYTES:
        raise ValueError(f"heavy job code exceeds {MAX_CODE_BYTES} bytes")
    spec: dict[str, Any] = {
        "job_id": job.job_id, "timeout_s": job.timeout_s, "memory_mb": job.memory_mb,
        "max_output_bytes": job.max_output_bytes,
    }
    return {CODE_FILE: job.code, INPUTS_FILE: json.dumps(job.inputs),
            JOB_FILE: json.dumps(spec, sort_keys=True)}


def write_job_dir(directory: Path, job: SandboxJob) -> None:
    for name, text in job_files(job).items():
        (directory / name).write_text(text, encoding="utf-8")


def read_job_dir(directory: Path) -> SandboxJob:
    spec = json.loads((directory / JOB_FILE).read_text(encoding="utf-8"))
    return SandboxJob(
        job_id=str(spec["job_id"]),
        code=(directory / CODE_FILE).read_text(encoding="utf-8"),
        inputs=json.loads((directory / INPUTS_FILE).read_text(encoding="utf-8")),
        timeout_s=float(spec["timeout_s"]),
        memory_mb=int(spec["memory_mb"]),
        max_output_bytes=int(spec["max_output_bytes"]),
    )


def encode_record(outcome: SandboxOutcome) -> str:
    return MARKER + _OUTCOME.dump_json(outcome).decode()


def parse_record(log: str) -> SandboxOutcome | None:
    """The outcome from the last marker line of a log, or None if there is none (or it is
    damaged, e.g. the log was cut off)."""
    for line in reversed(log.splitlines()):
        if line.startswith(MARKER):
            try:
                return _OUTCOME.validate_json(line[len(MARKER):])
            except ValidationError:
                return None
    return None


def failed(reason_code: str, reason: str, *, layers: tuple[str, ...] = (),
           status: str = "failed", stderr: str = "") -> SandboxOutcome:
    """An outcome for a job that produced no record of its own."""
    return _OUTCOME.validate_python({
        "status": status, "exit_code": None, "stdout": "", "stderr": stderr,
        "duration_ms": 0.0, "reason_code": reason_code, "reason": reason, "layers": layers,
    })
