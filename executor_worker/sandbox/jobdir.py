"""Create and remove a job's private directory under the sandbox's work root."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
import uuid
from pathlib import Path

import structlog

from executor_worker.sandbox.api import SandboxJob
from executor_worker.sandbox.jobfiles import RESERVED, ours_to_rewrite, write_job_files

log = structlog.get_logger(__name__)


def make_job_dir(root: Path, job: SandboxJob, owner: int | None) -> Path:
    """A fresh 0700 directory holding main.py and inputs.json (where slots keep no
    directory of their own: see slot_dir).

    With per-slot uids the directory is handed to the job's uid (the files stay the worker's,
    readable); otherwise it stays the worker's and Landlock confines the job to it.
    """
    job_dir = Path(tempfile.mkdtemp(prefix="job-", dir=root))
    try:
        if owner is not None:
            os.chown(job_dir, owner, owner)
        write_job_files(job_dir, job)
    except BaseException:
        remove_job_dir(job_dir)
        raise
    return job_dir


#: A slot directory's mode: the job's group may create and remove its own entries; only
#: root (the owner) may change the directory itself (mode, ACLs, flags) or, as it is
#: sticky, its extended attributes or the files we wrote (main.py, inputs.json).
SLOT_DIR_MODE = 0o1770


def slot_dir(root: Path, slot: int) -> Path:
    """Where a slot's jobs run, one after another, where the zygote keeps a slot's
    namespaces (see ZygoteSandbox): made here, root-owned and closed (0700) until
    :func:`open_slot_dir` gives it to the slot's group. Kept empty between jobs."""
    path = root / f"slot-{slot}"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            raise
    return path


def open_slot_dir(path: Path, gid: int) -> None:
    """Give the slot's group its directory (SLOT_DIR_MODE); also undoes what a job could
    have changed of it, should a kernel ever let it: mode, group, extended attributes."""
    fd = os.open(path, _DIR_FLAGS)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise PermissionError(f"{path} is not ours (uid {st.st_uid})")
        if st.st_gid != gid:
            os.fchown(fd, -1, gid)
        if stat.S_IMODE(st.st_mode) != SLOT_DIR_MODE:
            os.fchmod(fd, SLOT_DIR_MODE)
        for name in os.listxattr(fd):
            os.removexattr(fd, name)
    finally:
        os.close(fd)


def remove_plain_job_dir(path: Path, keep: bool = False) -> bool:
    """The common case, cheap enough for the event loop: a directory holding only the files
    we wrote (and regular files). False if anything else is there: then the caller removes
    it with :func:`remove_job_dir`, which copes with whatever the job left. ``keep``: empty
    it but for our own job files, and keep the directory (a slot's, see slot_dir)."""
    try:
        top = os.open(path, _DIR_FLAGS)
    except OSError:
        return False
    try:
        names = os.listdir(top)
        if len(names) > 16:
            return False
        for name in names:
            if keep and _kept(top, os.fsencode(name)):
                continue
            os.unlink(name, dir_fd=top)  # a directory raises (EISDIR/EPERM): the slow path
        if not keep:
            os.rmdir(path)
    except OSError:
        return False
    finally:
        os.close(top)
    return True


def instance_dir_name(pid: int) -> str:
    """``sbx.<host>.<pid>.<random>``: the host part keeps a work dir shared by mistake
    between pods (separate pid namespaces) from sweeping the other pod's live jobs."""
    return f"sbx.{socket.gethostname()}.{pid}.{uuid.uuid4().hex[:8]}"


def sweep_dead_instances(work_dir: Path) -> None:
    """Remove this host's instance directories whose worker process is gone.

    Never raises: a work dir poisoned by a job (depth, modes, odd names) must not stop the
    worker from starting; what cannot be removed is quarantined.
    """
    prefix = f"sbx.{socket.gethostname()}"
    try:
        entries = list(os.scandir(work_dir))
    except OSError as exc:
        log.warning("sandbox.sweep_failed", work_dir=str(work_dir), error=str(exc))
        return
    for entry in entries:
        owner, _, rest = entry.name.rpartition(".")[0].rpartition(".")
        try:
            if owner != prefix or not rest.isdigit() or not entry.is_dir(follow_symlinks=False):
                continue
        except OSError:
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


QUARANTINE = ".quarantine"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def empty_job_dir(path: Path) -> None:
    """Remove everything in a slot's directory (see slot_dir), whatever the job left, but
    our own job files (rewritten for the next job) and the directory; as
    :func:`remove_job_dir` does, but this one raises if it cannot (the caller must not give
    the directory to another job then)."""
    _unlock(os.fspath(path))
    _empty_tree(os.fspath(path), keep=True)


_RESERVED = frozenset(os.fsencode(name) for name in RESERVED)


def _kept(top: int, name: bytes) -> bool:
    """One of our job files, still ours: it stays in a slot's directory."""
    if name not in _RESERVED:
        return False
    try:
        return ours_to_rewrite(os.stat(name, dir_fd=top, follow_symlinks=False))
    except OSError:
        return False


def remove_job_dir(path: Path) -> None:
    """Remove a job's (or a dead instance's) directory; never raises, never recurses.

    The job's processes are gone by now, so nothing races us. Nothing is followed: every
    entry is handled relative to its parent's descriptor. Depth costs nothing: the
    subdirectories of each directory are renamed up into the top one, so the tree is
    flattened as it is removed. Modes the job set are undone on the way. Whatever still
    cannot be removed is moved to ``<work dir>/.quarantine`` and logged.
    """
    try:
        _remove_tree(os.fspath(path))
    except OSError as exc:
        _quarantine(path, exc)


def _remove_tree(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    _unlock(path)
    _empty_tree(path)
    os.rmdir(path)


def _empty_tree(path: str, keep: bool = False) -> None:
    top = os.open(path, _DIR_FLAGS)
    try:
        counter = 0
        while True:
            names = [name for name in _names(top) if not (keep and _kept(top, name))]
            if not names:
                break
            for name in names:
                counter += 1
                _clear_entry(top, name, counter)
    finally:
        os.close(top)


def _clear_entry(top: int, name: bytes, counter: int) -> None:
    """Remove ``name`` in ``top`` if it is not a directory; else empty it one level by
    moving its subdirectories up into ``top`` (under fresh names), then remove it."""
    st = os.stat(name, dir_fd=top, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=top)
        return
    if stat.S_IMODE(st.st_mode) & 0o700 != 0o700:
        os.chmod(name, 0o700, dir_fd=top)  # a directory (just checked), not a link
    sub = os.open(name, _DIR_FLAGS, dir_fd=top)
    try:
        for inner in _names(sub):
            inner_st = os.stat(inner, dir_fd=sub, follow_symlinks=False)
            if stat.S_ISDIR(inner_st.st_mode):
                # Moving a directory rewrites its "..": it must be writable (as non-root).
                if stat.S_IMODE(inner_st.st_mode) & 0o700 != 0o700:
                    os.chmod(inner, 0o700, dir_fd=sub)
                os.rename(inner, f".rm-{counter}-{uuid.uuid4().hex}", src_dir_fd=sub,
                          dst_dir_fd=top)
            else:
                os.unlink(inner, dir_fd=sub)
    finally:
        os.close(sub)
    os.rmdir(name, dir_fd=top)


def _names(dir_fd: int) -> list[bytes]:
    return [os.fsencode(n) for n in os.listdir(dir_fd)]


def _unlock(path: str) -> None:
    st = os.lstat(path)
    if stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o700 != 0o700:
        os.chmod(path, 0o700)


def _quarantine(path: Path, exc: OSError) -> None:
    target = path.parent / QUARANTINE
    try:
        target.mkdir(mode=0o700, exist_ok=True)
        os.rename(path, target / f"{path.name}.{uuid.uuid4().hex[:8]}")
        log.error("sandbox.quarantined", path=str(path), error=str(exc), moved_to=str(target))
    except OSError as again:
        log.error("sandbox.cannot_remove", path=str(path), error=str(exc),
                  quarantine_error=str(again))
