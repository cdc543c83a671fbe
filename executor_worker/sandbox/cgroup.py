"""A cgroup v2 per job, where the host delegates a subtree to us: totals bounded.

Runs in the zygote (standard library only). ``detect`` says whether the hierarchy the
zygote lives in is cgroup v2 *and* writable with the controllers a job needs; if not, it
returns the reason, which becomes the ``cgroup`` note (the layer is then off). With one,
the zygote moves itself into a ``zygote`` leaf (v2's "no internal processes" rule: a cgroup
that has children with controllers enabled may hold no processes), enables the controllers
for its siblings, and ``create`` makes one ``job-<n>`` cgroup per job with:

- ``memory.max``: the job's memory limit (all its processes together, not each one);
- ``memory.swap.max`` = 0: the limit cannot be escaped into swap;
- ``pids.max``: the job's process budget, whatever its uid (RLIMIT_NPROC ignores root);
- ``cpu.max``: at most ``cpu_quota`` cores' worth of CPU time per period.

The zygote opens the job cgroup's ``cgroup.procs`` and hands the descriptor to the job's
child with its ``run`` message; the child writes its own pid into it first thing, before it
is confined (the kernel checks the opener's credentials, so the child's later uid does not
matter, and every process the job forks inherits the cgroup). ``release`` runs once the
job's last process is reaped: ``rmdir`` of the empty cgroup; if something is still in it,
``cgroup.kill`` (or SIGKILL to each pid in ``cgroup.procs`` where that file is missing) and
``rmdir`` again, retried by the zygote until it succeeds.

Tests point the zygote at a fake cgroupfs (a plain directory tree; this VM is cgroup v1
hybrid). ``emulate_kernel(True)`` makes this module do there what the kernel does on a real
one: interface files appear with a cgroup's ``mkdir`` and go with its ``rmdir``; and it
keeps a record (``writes.log`` in the delegated directory) of each cgroup's files as they
were when it was removed. Only the zygote's private start-up configuration turns it on.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal

from executor_worker.sandbox.records import record

CGROUP_MOUNT = "/sys/fs/cgroup"
NEEDED = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000
#: What the kernel creates in every new cgroup (those we use; emulated on a fake tree).
_INTERFACE_FILES = ("cgroup.procs", "cgroup.kill", "cgroup.events", "memory.max",
                    "memory.swap.max", "pids.max", "cpu.max")
_emulated = False


def emulate_kernel(on: bool) -> None:
    """Behave on a plain directory tree as the kernel does on cgroupfs (tests only)."""
    global _emulated
    _emulated = on


@record(frozen=True)
class JobLimits:
    memory_bytes: int
    pids: int
    cpu_quota: float = 1.0  # cores


def own_cgroup(proc_self_cgroup: str = "/proc/self/cgroup") -> str | None:
    """Our path in the v2 hierarchy (the ``0::`` line), or None on a v1-only host."""
    try:
        with open(proc_self_cgroup) as fh:
            for line in fh:
                if line.startswith("0::"):
                    return line[3:].strip() or "/"
    except OSError:
        return None
    return None


def detect(mount: str = CGROUP_MOUNT, proc_self_cgroup: str = "/proc/self/cgroup",
           ) -> tuple[str | None, str]:
    """(the directory under which job cgroups go, "") or (None, why the layer is off)."""
    controllers_file = os.path.join(mount, "cgroup.controllers")
    if not os.path.exists(controllers_file):
        return None, (f"no cgroup v2 hierarchy at {mount} (cgroup v1 or hybrid host): "
                      "RLIMIT_AS bounds each process of a job, not its total")
    own = own_cgroup(proc_self_cgroup)
    if own is None:
        return None, "this process is in no cgroup v2 group (/proc/self/cgroup has no 0:: line)"
    base = os.path.normpath(os.path.join(mount, own.lstrip("/")))
    try:
        with open(os.path.join(base, "cgroup.controllers")) as fh:
            available = set(fh.read().split())
    except OSError as exc:
        return None, f"cannot read the controllers of {base}: {exc}"
    lacking = [c for c in NEEDED if c not in available]
    if lacking:
        return None, (f"cgroup {base} is not delegated the {', '.join(lacking)} "
                      "controller(s)")
    for name in ("cgroup.subtree_control", "cgroup.procs"):
        if not os.access(os.path.join(base, name), os.W_OK):
            return None, f"{base}/{name} is not writable: no cgroup subtree delegated to us"
    if not os.access(base, os.W_OK):
        return None, f"cannot create cgroups under {base}: not delegated to us"
    return base, ""


def take_over(base: str, pid: int) -> None:
    """Move ``pid`` (the zygote) into a leaf and enable the controllers below ``base``.

    The zygote inherits its cgroup from the worker, so the worker (and whatever else the
    delegated cgroup holds, e.g. a container's init) is there too: v2 allows no process in
    a cgroup whose controllers are enabled for its children, so those move into a leaf
    of their own, ``worker``, with no limits (as docker-in-docker does with ``init``).
    Empty ``job-*`` cgroups a zygote that died left behind are removed.
    """
    leaf = os.path.join(base, "zygote")
    os.makedirs(leaf, exist_ok=True)
    _write(os.path.join(leaf, "cgroup.procs"), str(pid))
    others = [p for p in _procs(base) if p != pid]
    if others:
        rest = os.path.join(base, "worker")
        os.makedirs(rest, exist_ok=True)
        for other in others:
            with contextlib.suppress(ProcessLookupError):  # gone meanwhile
                _write(os.path.join(rest, "cgroup.procs"), str(other))
    _write(os.path.join(base, "cgroup.subtree_control"), " ".join(f"+{c}" for c in NEEDED))
    with os.scandir(base) as entries:
        stale = [e.path for e in entries if e.name.startswith("job-") and e.is_dir()]
    for path in stale:
        if not _emulated:  # a fake tree cannot tell empty from populated: left alone
            remove(path)  # rmdir: only an empty cgroup goes, never another zygote's job


def _procs(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as fh:
            return [int(word) for word in fh.read().split() if word.isdigit()]
    except OSError:
        return []


def create(base: str, name: str, limits: JobLimits) -> str:
    """A job's own cgroup with its limits written; returns its path."""
    path = os.path.join(base, name)
    os.mkdir(path, 0o755)
    try:
        if _emulated:
            for interface in _INTERFACE_FILES:
                _write(os.path.join(path, interface), "")
        _write(os.path.join(path, "memory.max"), str(limits.memory_bytes))
        _write(os.path.join(path, "memory.swap.max"), "0")
        _write(os.path.join(path, "pids.max"), str(limits.pids))
        quota = max(1000, int(limits.cpu_quota * CPU_PERIOD_US))
        _write(os.path.join(path, "cpu.max"), f"{quota} {CPU_PERIOD_US}")
    except BaseException:
        remove(path)
        raise
    return path


def join(path: str, pid: int = 0) -> None:
    """Move ``pid`` (0: the caller) into the cgroup at ``path``."""
    _write(os.path.join(path, "cgroup.procs"), str(pid or os.getpid()))


def open_procs(path: str) -> int:
    """A write-only descriptor of the cgroup's ``cgroup.procs`` (for the job's child)."""
    return os.open(os.path.join(path, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)


def remove(path: str) -> bool:
    """rmdir the (empty) cgroup; False if it is still busy or already gone."""
    try:
        if _emulated:
            _record_and_clear(path)
        os.rmdir(path)
    except OSError:
        return False
    return True


def kill(path: str) -> None:
    """SIGKILL every process in the cgroup: ``cgroup.kill`` (kernel >= 5.14), else each pid
    listed in ``cgroup.procs`` (pids as our PID namespace sees them)."""
    try:
        _write(os.path.join(path, "cgroup.kill"), "1")
        return
    except OSError:
        pass
    for pid in _procs(path):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def release(path: str) -> bool:
    """Remove the job's cgroup; kill what is still in it first if it is busy. False if it
    is still there (its processes are dying): call again later."""
    if remove(path) or not os.path.isdir(path):
        return True
    kill(path)
    return remove(path)


def _record_and_clear(path: str) -> None:
    """Fake tree only: note the cgroup's files (and when cgroup.procs was last written),
    then delete them as the kernel's rmdir would."""
    if not _emulated or not os.path.isdir(path):
        return
    entry: dict[str, str] = {"name": os.path.basename(path)}
    for interface in sorted(os.listdir(path)):
        file = os.path.join(path, interface)
        if os.path.isfile(file):
            with open(file) as fh:
                entry[interface] = fh.read()
            if interface == "cgroup.procs":
                entry["cgroup.procs.mtime_ns"] = str(os.stat(file).st_mtime_ns)
    if any(os.path.isdir(os.path.join(path, n)) for n in os.listdir(path)):
        raise OSError(16, "cgroup has child cgroups", path)  # EBUSY, as the kernel says
    with open(os.path.join(os.path.dirname(path), "writes.log"), "a") as fh:
        fh.write(json.dumps(entry) + "\n")
    for interface in os.listdir(path):
        os.unlink(os.path.join(path, interface))


def _write(path: str, value: str) -> None:
    flags = os.O_WRONLY | os.O_CLOEXEC | (os.O_CREAT | os.O_TRUNC if _emulated else 0)
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
