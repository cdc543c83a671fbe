"""The job's seccomp filter, compiled once in the zygote and installed in every child.

A deny-list (Python itself needs a wide, version-dependent set of syscalls): everything that
reaches other processes, the kernel's attack surface or a way out of the job's process group
and network isolation returns EPERM, so hostile code sees an ordinary PermissionError.
Compiling with libseccomp costs ~0.5 ms, which is why the zygote exports the program and
children load bytes. Loading is not free either (~0.6-0.8 ms for the whole filter: the kernel
checks, JIT-compiles and builds its per-syscall cache), so it is split in two filters that
the kernel stacks (a call is refused if either refuses it): the *ahead* filter is the whole
filter but for the few calls the child still needs to confine itself (``SETUP_SYSCALLS``),
loaded before the job arrives; the *final* filter refuses exactly those, loaded last. The
two together refuse exactly what the whole filter refuses.
"""

from __future__ import annotations

import errno
import os

#: Not typing.TYPE_CHECKING (see protocol.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Syscalls no job needs: tracing and reading other processes, (un)mounting, namespaces,
#: keyrings, eBPF, perf, modules, clocks, io_uring (it performs socket/file operations the
#: filter would not see), leaving the process group (setsid/setpgid escape killpg), and
#: changing credentials.
DENIED = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp", "process_madvise",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    "unshare", "setns",
    "add_key", "keyctl", "request_key",
    "bpf", "perf_event_open", "userfaultfd", "fanotify_init",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "reboot", "swapon", "swapoff", "acct", "syslog", "quotactl", "quotactl_fd", "vhangup",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "iopl", "ioperm", "open_by_handle_at", "name_to_handle_at", "lookup_dcookie",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "setsid", "setpgid",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
    "setgroups", "setfsuid", "setfsgid", "capset",
    # Every new socket: no network whatever the namespace situation. socketpair() stays
    # allowed (asyncio, multiprocessing) because it can only ever talk to itself.
    "socket",
)
EXEC_SYSCALLS = ("execve", "execveat")
#: Watching files: inotify and fanotify reveal the host's and siblings' activity (and names)
#: wherever a path can be resolved, which Landlock does not govern.
WATCH_SYSCALLS = ("inotify_init", "inotify_init1", "inotify_add_watch", "fanotify_init",
                  "fanotify_mark")
#: System V IPC and POSIX message queues are per IPC namespace: without one of its own a job
#: would share them with the host and every other job (and leave state behind).
IPC_SYSCALLS = (
    "shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl",
    "msgget", "msgsnd", "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend",
    "mq_timedreceive", "mq_notify", "mq_getsetattr",
)
#: With the worker's uid the job owns what the worker owns, and Landlock does not govern
#: metadata: every change of mode, owner, times or extended attributes is refused (EPERM),
#: even on the job's own files (the filter cannot tell them apart: it sees no paths). So in
#: that mode shutil.copy/copy2 fail at their copymode/copystat step; copyfile works.
METADATA_SYSCALLS = (
    "chmod", "fchmod", "fchmodat", 452,  # fchmodat2
    "chown", "fchown", "lchown", "fchownat",
    "utime", "utimes", "utimensat", "futimesat",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
)
#: Calls that take a pid (argument 0) and change another process: only 0 (the caller) passes.
#: The uid and Landlock's signal scoping do not stop these; a PID namespace does, this too.
SELF_ONLY = ("prlimit64", "sched_setaffinity", "sched_setscheduler", "sched_setparam",
             "sched_setattr", "migrate_pages", "move_pages")
#: In DENIED, but the child makes them while confining itself (own session, IPC namespace,
#: bind /tmp, user namespace, uid switch, capability drop) or, on root hosts, the slot's init
#: does, which loads the ahead filter once for all the job processes it forks (unmounting a
#: job's /tmp, and kill(-1) to sweep: see _KILL_ALL): the final filter refuses them.
SETUP_SYSCALLS = ("mount", "umount2", "unshare", "setsid", "setgroups", "setresgid",
                  "setresuid", "capset")
_SOCK_STREAM = 1
_AF_UNIX = 1

_CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)


def compile_apart(allow_exec: bool, *, shared_uid: bool = True,
                  private_ipc: bool = False) -> tuple[bytes, tuple[bytes, bytes]]:
    """compile_filter and compile_filters, in a forked child: libseccomp and its bindings
    (~1.2 MB) never enter the zygote, whose every byte each job pays to fork and unmap."""
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(read_end)
            try:
                whole = compile_filter(allow_exec, shared_uid=shared_uid,
                                       private_ipc=private_ipc)
                ahead, final = compile_filters(allow_exec, shared_uid=shared_uid,
                                               private_ipc=private_ipc)
                reply = b"".join(len(p).to_bytes(4, "little") + p for p in (whole, ahead, final))
            except Exception as exc:  # missing libseccomp, unknown arch, ...
                reply = b"E" + f"{type(exc).__name__}: {exc}".encode(errors="replace")[:2000]
            with os.fdopen(write_end, "wb") as out:
                out.write(reply)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    if data[:1] == b"E":
        raise RuntimeError(data[1:].decode(errors="replace"))
    programs = []
    while len(data) >= 4:
        size = int.from_bytes(data[:4], "little")
        programs.append(data[4:4 + size])
        data = data[4 + size:]
    if len(programs) != 3 or not all(programs):
        raise RuntimeError("the process compiling the filter ended without it")
    return programs[0], (programs[1], programs[2])


def compile_filters(allow_exec: bool, *, shared_uid: bool = True,
                    private_ipc: bool = False) -> tuple[bytes, bytes]:
    """(ahead, final): two programs that, stacked, refuse what compile_filter refuses."""
    ahead = compile_filter(allow_exec, shared_uid=shared_uid, private_ipc=private_ipc,
                           spare=(*SETUP_SYSCALLS, _KILL_ALL))
    return ahead, _compile_denying(SETUP_SYSCALLS)


#: The one conditional rule the ahead filter leaves to the final one (a spare name).
_KILL_ALL = "kill(-1)"


def _compile_denying(names: tuple[str, ...]) -> bytes:
    import pyseccomp as sc

    flt = sc.SyscallFilter(defaction=sc.ALLOW)
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for name in names:
        flt.add_rule(sc.ERRNO(errno.EPERM), name)
    _deny_kill_all(flt, sc)
    return _export(flt)


def _deny_kill_all(flt: Any, sc: Any) -> None:
    # kill(-1, ...) signals every process the job's uid may signal: the worker itself when
    # there is no uid layer. pid_t is 32-bit; compare the low half only.
    flt.add_rule(sc.ERRNO(errno.EPERM), "kill", sc.Arg(0, sc.MASKED_EQ, 0xFFFFFFFF, 0xFFFFFFFF))


def compile_filter(allow_exec: bool, *, shared_uid: bool = True,
                   private_ipc: bool = False, spare: tuple[str, ...] = ()) -> bytes:
    """Build the filter with pyseccomp and return the raw BPF program.

    ``shared_uid``: the job holds the worker's uid (no uid layer), so the metadata calls are
    closed too. ``private_ipc``: the job has an IPC namespace of its own, so SysV IPC and
    POSIX message queues stay open (private, and gone with the job). ``spare``: names
    left out (the final filter of compile_filters refuses them).
    """
    import pyseccomp as sc  # imported here: only the zygote needs libseccomp

    deny = sc.ERRNO(errno.EPERM)
    flt = sc.SyscallFilter(defaction=sc.ALLOW)
    # A syscall from another ABI (i386 int 0x80, x32) would dodge a native deny-list.
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    names: list[str | int] = [*DENIED, *WATCH_SYSCALLS]
    names += [] if allow_exec else EXEC_SYSCALLS
    names += [] if private_ipc else IPC_SYSCALLS
    names += METADATA_SYSCALLS if shared_uid else []
    for name in names:
        if name not in spare:
            flt.add_rule(deny, name)
    # Full 64-bit comparisons: a pid with garbage in the upper half is not 0 either.
    for name in SELF_ONLY:
        flt.add_rule(deny, name, sc.Arg(0, sc.NE, 0))
    # setpriority(which, who): PRIO_PROCESS (0) of the caller (0) only; PRIO_USER with
    # who=0 would mean every process of the uid.
    flt.add_rule(deny, "setpriority", sc.Arg(0, sc.NE, 0))
    flt.add_rule(deny, "setpriority", sc.Arg(1, sc.NE, 0))
    flt.add_rule(deny, "ioprio_set")
    # socketpair(AF_UNIX, SOCK_STREAM) only: a datagram or seqpacket pair can sendto() any
    # pathname socket on the host (Landlock does not restrict that); a connected stream
    # socket ignores addresses. The type's low 4 bits (flags above them are allowed).
    flt.add_rule(deny, "socketpair", sc.Arg(0, sc.NE, _AF_UNIX))
    for kind in range(16):
        if kind != _SOCK_STREAM:
            flt.add_rule(deny, "socketpair", sc.Arg(1, sc.MASKED_EQ, 0xF, kind))
    for flag in _CLONE_NAMESPACE_FLAGS:
        flt.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory the filter cannot read; ENOSYS makes libc fall back
    # to clone(), whose flags we can check.
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    if _KILL_ALL not in spare:
        _deny_kill_all(flt, sc)
    return _export(flt)


def _export(flt: object) -> bytes:
    fd = os.memfd_create("seccomp-bpf")
    try:
        flt.export_bpf(_Fileno(fd))  # type: ignore[attr-defined]
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


class _Fileno:
    """export_bpf wants an object with fileno(); a memfd needs no real file."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd
