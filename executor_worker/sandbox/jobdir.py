"""Create and remove a job's private directory under the sandbox's work root."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import uuid
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


def instance_dir_name(pid: int) -> str:
    """``sbx.<host>.<pid>.<random>``: the host part keeps a work dir shared by mistake
    between pods (separate pid namespaces) from sweeping the other pod's live jobs."""
    return f"sbx.{socket.gethostname()}.{pid}.{uuid.uuid4().hex[:8]}"


def sweep_dead_instances(work_dir: Path) -> None:
    """Remove this host's instance directories whose worker process is gone."""
    prefix = f"sbx.{socket.gethostname()}"
    for entry in os.scandir(work_dir):
        owner, _, rest = entry.name.rpartition(".")[0].rpartition(".")
        if owner != prefix or not rest.isdigit() or not entry.is_dir(follow_symlinks=False):
            continue
        if not _alive(int(rest)):
            remove_job_dir(Path(entry.path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_job_dir(path: Path) -> None:
    """Remove the directory; the job's processes are gone by now, so nothing races us."""
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
        # The job chmod-ed its own subdirectories to 000: as a non-root worker we must give
        # ourselves access back first.
        _unlock_tree(str(path))
        shutil.rmtree(path, ignore_errors=True)


def _unlock_tree(top: str) -> None:
    stack = [top]
    while stack:
        current = stack.pop()
        # Never through a symlink: a job could point one at a worker-owned file.
        with contextlib.suppress(OSError, NotImplementedError):
            os.chmod(current, 0o700, follow_symlinks=False)
        try:
            with os.scandir(current) as entries:
                stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
        except OSError:
            continue
