"""Create and remove a job's private directory under the sandbox's work root."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from executor_worker.sandbox.api import SandboxJob
from executor_worker.sandbox.jobfiles import write_job_files


def make_job_dir(root: Path, job: SandboxJob, owner: int | None) -> Path:
    """A fresh 0700 directory holding main.py and inputs.json.

    With per-slot uids the directory is handed to the job's uid (the files stay the worker's,
    readable); otherwise it stays the worker's and Landlock confines the job to it.
    """
    job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=root))
    try:
        write_job_files(job_dir, job)
        if owner is not None:
            os.chown(job_dir, owner, owner)
    except BaseException:
        remove_job_dir(job_dir)
        raise
    return job_dir


def remove_job_dir(path: Path) -> None:
    def retry_writable(_func: object, target: str, _exc: object) -> None:
        # A job may chmod its own subdirectories to 000; the worker owns the cleanup.
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(target), 0o700)
            os.chmod(target, 0o700)
        with contextlib.suppress(OSError):
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target, ignore_errors=True)
            else:
                os.unlink(target)

    shutil.rmtree(path, onerror=retry_writable)
