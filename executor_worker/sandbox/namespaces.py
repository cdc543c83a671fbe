"""A job's own mount, IPC, UTS (and PID) namespaces, set up by the job's init process.

Runs in the zygote's children, ahead of the job (standard library only). The PID namespace
is created by the zygote (``unshare(CLONE_NEWPID)`` then ``fork``: the child is the new
namespace's PID 1); that child then enters fresh mount, IPC and UTS namespaces and builds
the view the job will have:

- mount propagation from the host is one-way (``MS_SLAVE``): nothing mounted here leaks out;
- ``/proc`` is a new procfs of the job's PID namespace (read-only, nosuid, nodev, noexec): it
  lists the job's processes and nothing of the host's;
- ``/tmp`` is the job's own directory (bound over it when the job starts): a job writing to
  /tmp writes to its own directory, and the host's /tmp, other jobs' directories included, is
  out of sight; ``/var/tmp``, ``/dev/shm`` and ``/run/lock`` (the host's other
  world-writable directories) are small private tmpfs mounts. Nothing reaches the host or
  another job, and it all goes away with the job. (Where the interpreter or a read path
  lives under one of them, that one stays the host's, denied by Landlock, and said so.)
- with per-slot uids, directories the job must read but which sit under a private home
  (``/root/.pyenv``: ``/root`` is 0700) are *revealed*: a tmpfs veils the private ancestor
  and the needed paths are bind-mounted back at their own names. Host permissions are never
  changed, and the job sees nothing else of that home.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from executor_worker.sandbox import linux
from executor_worker.sandbox.records import field, record

#: The host's world-writable directories: each gets a private tmpfs.
PRIVATE_TMP = ("/var/tmp", "/dev/shm", "/run/lock")
JOB_TMP = "/tmp"
#: Linux refuses a per-namespace pid_max below this (RESERVED_PIDS + 1).
PID_MAX_FLOOR = 301


@record(frozen=True)
class Veil:
    """A private directory (not traversable by others) and the paths beneath it to reveal."""

    top: str
    reveal: tuple[str, ...]


@record(frozen=True)
class NamespacePlan:
    pid: bool = False
    mount: bool = False
    ipc: bool = False
    uts: bool = False
    tmp_bytes: int = 64 * 1024 * 1024
    pid_max: int = PID_MAX_FLOOR
    veils: tuple[Veil, ...] = field(default_factory=tuple)
    #: Paths that must stay visible (the work root, the interpreter, read paths): a private
    #: tmpfs over an ancestor (a work dir under /tmp, a venv under /tmp) binds them back.
    keep: tuple[str, ...] = ()

    @property
    def flags(self) -> int:
        return ((linux.CLONE_NEWNS if self.mount else 0)
                | (linux.CLONE_NEWIPC if self.ipc else 0)
                | (linux.CLONE_NEWUTS if self.uts else 0))

    def layers(self) -> tuple[str, ...]:
        named = (("pidns", self.pid), ("mountns", self.mount), ("ipcns", self.ipc),
                 ("utsns", self.uts))
        return tuple(name for name, on in named if on)

    #: The work root: revealed where needed, but never a reason to keep a host /tmp.
    work_root: str = ""

    def private_dirs(self) -> tuple[str, ...]:
        if not self.mount:
            return ()
        return tuple(d for d in PRIVATE_TMP if os.path.isdir(d) and not self._holds_kept(d))

    def job_tmp(self) -> bool:
        """Whether /tmp becomes the job's own directory."""
        return self.mount and not self._holds_kept(JOB_TMP, except_work_root=True)

    def _holds_kept(self, directory: str, except_work_root: bool = False) -> bool:
        return any(beneath(p, directory) for p in self.keep
                   if not (except_work_root and p == self.work_root))


def enter(plan: NamespacePlan) -> None:
    """Called by the job's init (PID 1 of its namespace, when there is one), still privileged
    in the user namespace that owns its namespaces."""
    if plan.flags:
        linux.unshare(plan.flags)
    if plan.uts:
        linux.sethostname("sandbox")
    if not plan.mount:
        return
    linux.mount("none", "/", None, linux.MS_REC | linux.MS_SLAVE)
    for veil in plan.veils:
        _veil(veil.top, veil.reveal, linux.MS_NOSUID | linux.MS_NODEV,
              "size=1m,nr_inodes=1024,mode=0755")
    nodev = linux.MS_NOSUID | linux.MS_NODEV
    if plan.pid:
        linux.mount("proc", "/proc", "proc", nodev | linux.MS_NOEXEC | linux.MS_RDONLY)
        _set_pid_max(plan.pid_max)
    for directory in plan.private_dirs():
        linux.mount("tmpfs", directory, "tmpfs", nodev | linux.MS_NOEXEC,
                    f"size={plan.tmp_bytes},nr_inodes=4096,mode=1777")


def enter_slot_job(plan: NamespacePlan) -> None:
    """In a slot's init (slot_ns.py, root hosts), right before it forks a job process: a
    fresh IPC namespace, which that process is born in (SysV objects and message queues
    outlive their processes: a shared one would carry them to the next job; the init
    leaves the last one, swept by then, for this one). The job process is born in the
    slot's mount and UTS namespaces too, set up once by :func:`enter` and reset after
    every job by :func:`reset_slot`: one unshare a job, where entering costs a copy of
    the mount table, a /proc, the private tmpfs mounts and, when the job ends, their
    teardown (~0.6 ms of CPU a job)."""
    if plan.ipc:
        linux.unshare(linux.CLONE_NEWIPC)


def tmp_identity() -> tuple[int, int]:
    st = os.stat(JOB_TMP)
    return st.st_dev, st.st_ino


#: Binds a sweep takes off /tmp at most before it gives the slot up (one per job is normal).
_MAX_TMP_BINDS = 8


def reset_slot(plan: NamespacePlan, tmp_before: tuple[int, int],
               private: tuple[str, ...]) -> bool:
    """In the slot's init, once every process of the last job is gone: take that job's
    directory off /tmp (``tmp_before``: what /tmp was before any job) and replace each
    private tmpfs the job wrote to with an empty one, so nothing one job wrote meets the
    next. True if a private tmpfs was replaced. Raises if /tmp cannot be restored: the
    zygote then drops the slot (its namespaces go with it). ``private``: the plan's
    private directories, as :func:`enter` mounted them (the init learns them once)."""
    if not plan.mount:
        return False
    for _ in range(_MAX_TMP_BINDS):
        if tmp_identity() == tmp_before:
            break
        linux.umount(JOB_TMP)
    else:
        raise RuntimeError("/tmp of the slot still shows a job's directory")
    nodev = linux.MS_NOSUID | linux.MS_NODEV
    replaced = False
    for directory in private:
        # Empty and root-owned 1777 (only the owner could change its mode): nothing to
        # carry over, and most jobs never write there. Else a fresh tmpfs.
        if not os.listdir(directory):
            continue
        linux.umount(directory)
        linux.mount("tmpfs", directory, "tmpfs", nodev | linux.MS_NOEXEC,
                    f"size={plan.tmp_bytes},nr_inodes=4096,mode=1777")
        replaced = True
    return replaced


def bind_job_tmp(plan: NamespacePlan) -> bool:
    """At dispatch, in the job's cwd (its directory): bind it over /tmp."""
    if not plan.job_tmp():
        return False
    linux.mount(".", JOB_TMP, None, linux.MS_BIND)
    return True


def beneath(path: str, ancestor: str) -> bool:
    return path != ancestor and path.startswith(ancestor.rstrip("/") + "/")


def _set_pid_max(pid_max: int) -> None:
    # A per-namespace pid_max (Linux >= 6.14) bounds how many processes the job can have,
    # whatever its uid (RLIMIT_NPROC does not apply to uid 0). Older kernels: global, skip.
    if os.getpid() != 1:
        return  # never outside a PID namespace of our own: that would be the host's limit
    try:
        fd = os.open("/proc/sys/kernel/pid_max", os.O_WRONLY)
    except OSError:
        return
    try:
        os.write(fd, str(max(pid_max, PID_MAX_FLOOR)).encode())
    except OSError:
        pass  # not namespaced here: the uid and RLIMIT_NPROC bound the job instead
    finally:
        os.close(fd)


def _veil(top: str, reveal: tuple[str, ...], flags: int, options: str) -> None:
    """A tmpfs over ``top``, with ``reveal`` (paths beneath it) bound back in place."""
    # Open what is to be revealed before the tmpfs hides it; bind it back by descriptor.
    held = []
    for path in _outermost(reveal):
        try:
            held.append((path, os.open(path, os.O_PATH | os.O_CLOEXEC)))
        except OSError:
            continue
    try:
        linux.mount("tmpfs", top, "tmpfs", flags, options)
        for path, fd in held:
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.makedirs(path, mode=0o755, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
            linux.mount(f"/proc/self/fd/{fd}", path, None, linux.MS_BIND | linux.MS_REC)
    finally:
        for _, fd in held:
            os.close(fd)


def veils_for(paths: Iterable[str]) -> tuple[Veil, ...]:
    """Group ``paths`` under their highest ancestor that other users cannot traverse."""
    grouped: dict[str, list[str]] = {}
    for path in dict.fromkeys(os.path.realpath(p) for p in paths):
        top = _private_ancestor(path)
        if top is not None:
            grouped.setdefault(top, []).append(path)
    # A veil inside another veil would be hidden by the outer one: reveal through the outer.
    tops = sorted(grouped)
    merged: dict[str, list[str]] = {}
    for top in tops:
        outer = next((t for t in merged if top.startswith(t.rstrip("/") + "/")), top)
        merged.setdefault(outer, []).extend(grouped[top])
    return tuple(Veil(top, _outermost(reveal)) for top, reveal in merged.items())


def _outermost(paths: Iterable[str]) -> tuple[str, ...]:
    """A path beneath another one comes with it."""
    chosen = sorted(set(paths))
    return tuple(p for p in chosen if not any(beneath(p, other) for other in chosen))


def _private_ancestor(path: str) -> str | None:
    current = "/"
    for part in path.strip("/").split("/")[:-1]:
        current = os.path.join(current, part)
        try:
            mode = os.stat(current).st_mode
        except OSError:
            return None
        if not mode & 0o001:
            return current
    return None
