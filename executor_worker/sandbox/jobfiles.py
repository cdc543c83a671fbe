"""A job's working directory: what goes in (code, inputs) and what comes back (artifacts).

The directory is hostile by the time it is read: names are bytes (a name that is not UTF-8
is escaped, ``\\xff``, so results always serialise), depth and counts are the job's choice
(the walk is iterative, bounded in depth, entries and artifacts), and nothing is followed:
every directory and file is opened relative to its parent with ``O_NOFOLLOW``, and a file is
read only if the descriptor itself is a regular file with a single link.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import stat
from pathlib import Path

from executor_worker.sandbox.api import SandboxJob
from schemas import Artifact

RESERVED = frozenset({"main.py", "inputs.json"})
MAX_ARTIFACTS = 64
#: Directory levels below the job directory that are searched for artifacts.
MAX_DEPTH = 16
#: Directory entries looked at in all, whatever the job created.
MAX_ENTRIES = 4096

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_REWRITE = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def write_job_files(job_dir: Path, job: SandboxJob, rewrite: bool = False) -> None:
    """main.py and inputs.json, as new files: whatever is in the way is neither followed
    nor overwritten. ``rewrite``: a slot's directory, where they stay from job to job (the
    job can neither write, remove nor replace them: see jobdir.SLOT_DIR_MODE), and are
    rewritten, if they are still ours and only here: no inode is allocated and freed per
    job (~0.2 ms a job on ext4 once its allocator has thousands of recently freed inodes
    to skip, seen with perf)."""
    for name, text in (("main.py", job.code), ("inputs.json", json.dumps(job.inputs))):
        encoded = text.encode("utf-8")
        fd = _open_to_write(job_dir / name, rewrite)
        try:
            data = memoryview(encoded)
            while data:
                data = data[os.write(fd, data):]
            if rewrite:
                os.ftruncate(fd, len(encoded))
        finally:
            os.close(fd)


def ours_to_rewrite(st: os.stat_result) -> bool:
    """A file we wrote, as we left it: regular, ours, no other name (link) for it."""
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_nlink == 1


def _open_to_write(path: Path, rewrite: bool) -> int:
    if not rewrite:
        return os.open(path, _NEW_FILE, 0o644)
    fd = os.open(path, _REWRITE, 0o644)
    if ours_to_rewrite(os.fstat(fd)):
        return fd
    os.close(fd)
    raise FileExistsError(errno.EEXIST, "not ours to rewrite", os.fspath(path))


def display_name(raw: bytes) -> str:
    """A name for the result: UTF-8 as it is, anything else escaped (``\\xff``)."""
    return raw.decode("utf-8", "backslashreplace")


def collect_artifacts(job_dir: Path, job: SandboxJob) -> list[Artifact]:
    """Regular files the job left behind, files before subdirectories, names sorted.

    Files up to ``max_artifact_inline_bytes`` come back inline; larger ones are listed.
    """
    found: list[Artifact] = []
    try:
        top = os.open(job_dir, _DIR_FLAGS)
    except OSError:
        return found
    budget = [MAX_ENTRIES]
    # Depth-first with an explicit stack of (directory fd, relative name, pending subdirs):
    # at most MAX_DEPTH descriptors open, no recursion.
    stack: list[tuple[int, bytes, list[bytes]]] = []
    try:
        stack.append((top, b"", _scan(top, b"", job, found, budget)))
        while stack and len(found) < MAX_ARTIFACTS:
            fd, rel, pending = stack[-1]
            if not pending or len(stack) > MAX_DEPTH:
                os.close(fd)
                stack.pop()
                continue
            name = pending.pop(0)
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # replaced by a link, unreadable: skipped
            sub_rel = rel + name + b"/"
            stack.append((sub, sub_rel, _scan(sub, sub_rel, job, found, budget)))
    finally:
        for fd, _, _ in stack:
            os.close(fd)
    return found[:MAX_ARTIFACTS]


def _scan(fd: int, rel: bytes, job: SandboxJob, found: list[Artifact],
          budget: list[int]) -> list[bytes]:
    """Add this directory's files to ``found``; return its subdirectories' names."""
    try:
        names = sorted(os.fsencode(n) for n in os.listdir(fd))
    except OSError:
        return []
    del names[budget[0]:]
    budget[0] -= len(names)
    subdirs: list[bytes] = []
    for name in names:
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            subdirs.append(name)
            continue
        path = rel + name
        if not stat.S_ISREG(st.st_mode) or (not rel and display_name(name) in RESERVED):
            continue  # symlinks, fifos, sockets: never opened
        if len(found) < MAX_ARTIFACTS:
            artifact = _artifact(fd, name, display_name(path), job.max_artifact_inline_bytes)
            if artifact is not None:
                found.append(artifact)
    return subdirs


def _artifact(dir_fd: int, name: bytes, shown: str, inline_cap: int) -> Artifact | None:
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        # Checked on the descriptor, so a swap after the listing changes nothing. A hard
        # link may name a file outside the job (a worker secret).
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            return None
        digest = hashlib.sha256()
        inline = bytearray() if st.st_size <= inline_cap else None
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            if inline is not None:
                inline += chunk
    content = base64.b64encode(bytes(inline)).decode() if inline is not None else None
    return Artifact(name=shown, size=st.st_size, sha256=digest.hexdigest(), content_b64=content)
