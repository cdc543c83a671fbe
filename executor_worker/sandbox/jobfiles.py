"""A job's working directory: what goes in (code, inputs) and what comes back (artifacts)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from pathlib import Path

from executor_worker.sandbox.api import SandboxJob
from schemas import Artifact

RESERVED = frozenset({"main.py", "inputs.json"})
MAX_ARTIFACTS = 64


def write_job_files(job_dir: Path, job: SandboxJob) -> None:
    (job_dir / "main.py").write_text(job.code, encoding="utf-8")
    (job_dir / "inputs.json").write_text(json.dumps(job.inputs), encoding="utf-8")


def collect_artifacts(job_dir: Path, job: SandboxJob) -> list[Artifact]:
    """Regular files the job left behind (never following symlinks), smallest names first.

    Files up to ``max_artifact_inline_bytes`` come back inline; larger ones are listed.
    """
    found: list[Artifact] = []
    for dirpath, dirnames, filenames in os.walk(job_dir, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(job_dir).as_posix()
            if rel in RESERVED:
                continue
            try:
                st = path.lstat()
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue  # symlinks, fifos, sockets: never read through them
            if st.st_nlink > 1:
                continue  # a hard link may name a file outside the job (a worker secret)
            found.append(_artifact(path, rel, st.st_size, job.max_artifact_inline_bytes))
            if len(found) >= MAX_ARTIFACTS:
                return found
    return found


def _artifact(path: Path, rel: str, size: int, inline_cap: int) -> Artifact:
    digest = hashlib.sha256()
    inline = bytearray() if size <= inline_cap else None
    # O_NOFOLLOW: the file was a regular file at lstat; refuse if it was swapped for a link.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            if inline is not None:
                inline += chunk
    content = base64.b64encode(bytes(inline)).decode() if inline is not None else None
    return Artifact(name=rel, size=size, sha256=digest.hexdigest(), content_b64=content)
