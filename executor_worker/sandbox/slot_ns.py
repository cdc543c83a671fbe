"""A slot's namespaces and its init, which forks the slot's jobs (root hosts).

Creating namespaces per job means copying the mount table, mounting a /proc and private
tmpfs, forking a second interpreter (the PID namespace's init) and tearing all of it down
when the job ends: a third of a trivial job's CPU. Where the zygote may re-enter its own PID
namespace (root), each slot instead gets one long-lived init: PID 1 of the slot's PID
namespace, in the slot's mount and UTS namespaces (set up once, see namespaces.enter), and a
fork of the zygote, so a warm interpreter. It forks the slot's job processes itself, ahead
of their jobs, on the zygote's ``FORK``: they are born inside the slot's namespaces, and the
zygote, which only relays messages, never blocks on a fork while a job waits for it. Each
job process is still born in an IPC namespace of its own (SysV objects outlive processes),
which the init makes before the fork.

The namespaces are the only thing kept, and they are kept empty: after a job ends the
zygote asks the init to *sweep*: ``kill(-1, SIGKILL)`` from PID 1 reaches every other
process of the namespace, and the init reaps until it has no child left, which, since every
process of the namespace descends from it, means none is left. It then takes the job's
directory off /tmp (unless the slot keeps one directory for all its jobs: bound once, and
emptied by the supervisor) and replaces the private tmpfs mounts with empty ones
(namespaces.reset_slot), so no file, /tmp entry, process or IPC object of one job meets the
next; only then does the slot (its uid) go to another job. Standard library only.

Messages on the init's channel (SOCK_SEQPACKET, one per datagram):
zygote -> init: ``f`` + the job process's channel (SCM_RIGHTS) = fork one; ``s`` = sweep
(and with a channel: then fork the next one).
init -> zygote: ``r`` ready (namespaces set up); ``e<wait status>`` the job process ended;
``c`` swept clean.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stub: signal's C half
import _socket
import contextlib
import os
import selectors
import signal
import socket
from collections.abc import Callable

from executor_worker.sandbox import linux, namespaces

#: Not typing.TYPE_CHECKING (see protocol.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, Protocol

    _Handler = Callable[[int, FrameType | None], Any] | int | None

    class Prepared(Protocol):
        """What the init prepared for its job processes (zygote_child.SlotAhead)."""

        def after_reset(self) -> None:
            """The slot's private mounts were replaced (namespaces.reset_slot)."""

        def before_fork(self) -> tuple[int, ...]:
            """Made for the next job process, which inherits them: the descriptors it
            keeps (the others are closed)."""

        def after_fork(self) -> None:
            """The fork is done (or failed): the init closes what before_fork made."""

    #: Called in the init once its namespaces and filter are in place, before any job process.
    PrepareInit = Callable[[], Prepared]


SWEEP = b"s"
CLEAN = b"c"
READY = b"r"
FORK = b"f"
EXITED = b"e"
_READY_TIMEOUT_S = 10.0
_SIGCHLD, _SIG_DFL = int(signal.SIGCHLD), int(signal.SIG_DFL)
#: Signals whose Python handlers an init must not keep (see _init_main); the job process
#: gets the zygote's dispositions back.
_INIT_DEFAULTS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE)

#: What the job process runs: (its channel to the zygote) -> exit status
JobMain = Callable[[_socket.socket], int]


class SlotNs:
    """The zygote's handle on one slot's init."""

    def __init__(self, init_pid: int, ctrl: socket.socket) -> None:
        self.init_pid = init_pid
        self.ctrl = ctrl  # the zygote's end: FORK and SWEEP out, READY/EXITED/CLEAN back
        self.sweeping = False  # a SWEEP was sent and its CLEAN has not come back

    def fork_job(self, chan: socket.socket) -> None:
        """Ask for a job process on ``chan`` (the child's end, passed over, not kept)."""
        socket.send_fds(self.ctrl, [FORK], [chan.fileno()])

    def sweep(self, next_chan: socket.socket | None = None) -> bool:
        """Ask for a sweep, unless one is under way (False then). ``next_chan``: the
        channel of the slot's next job process, which the init forks once swept."""
        if self.sweeping:
            return False
        self.sweeping = True
        if next_chan is None:
            self.ctrl.send(SWEEP)
        else:
            socket.send_fds(self.ctrl, [SWEEP], [next_chan.fileno()])
        return True

    def close(self) -> None:
        self.ctrl.close()


def create(own_pidns: int, plan: namespaces.NamespacePlan, before_child: list[socket.socket],
           job_main: JobMain, prepare_init: PrepareInit,
           ahead_filter: bytes | None = None, job_dir: str | None = None) -> SlotNs:
    """Fork a new slot init (in a new PID namespace) and return its handle.

    ``before_child``: the zygote's sockets, detached in the child before anything else.
    ``ahead_filter``: the seccomp ahead filter (seccomp_filter.compile_filters), loaded by
    the init once its namespaces are set up, so that every job process it forks has it.
    ``job_dir``: the slot's directory, which all its jobs use (emptied between them by the
    supervisor): the init's working directory, bound over /tmp once, for good.
    """
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    linux.unshare(linux.CLONE_NEWPID)
    pid = -1
    try:
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                signal.set_wakeup_fd(-1)
                for sock in [*before_child, mine]:
                    sock.detach()
                os.closerange(3, theirs.fileno())
                os.closerange(theirs.fileno() + 1, 2**31 - 1)
                status = _init_main(theirs, plan, job_main, prepare_init, ahead_filter,
                                    job_dir)
            finally:
                os._exit(status)
    finally:
        if pid != 0:
            linux.setns(own_pidns, linux.CLONE_NEWPID)
    theirs.close()
    try:
        # Its namespaces (/proc, pid_max, the private mounts) are in place before any job.
        mine.settimeout(_READY_TIMEOUT_S)
        if mine.recv(16) != READY:
            raise RuntimeError("the slot's init failed to set up its namespaces")
    except (OSError, RuntimeError):
        mine.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        raise
    mine.setblocking(False)
    return SlotNs(pid, mine)


def parse_exited(data: bytes) -> int | None:
    """The wait status in an ``EXITED`` message, None if ``data`` is not one."""
    if data[:1] != EXITED or not data[1:].isdigit():
        return None
    return int(data[1:])


def _init_main(ctrl: socket.socket, plan: namespaces.NamespacePlan, job_main: JobMain,
               prepare_init: PrepareInit, ahead_filter: bytes | None,
               job_dir: str | None) -> int:
    """PID 1 of a slot's namespaces: fork job processes on FORK, report their end, reap
    whatever reaches us; on SWEEP kill everything else, reap until no child is left, reset
    the mounts, answer CLEAN."""
    linux.set_parent_death_signal(signal.SIGKILL)  # the zygote gone: the namespace goes
    kept = {int(signum): _plain(signal.getsignal(signum)) for signum in _INIT_DEFAULTS}
    for signum in _INIT_DEFAULTS:
        signal.signal(signum, signal.SIG_DFL)  # SIG_DFL: unkillable from inside the ns
    os.setsid()
    namespaces.enter(plan)
    if job_dir is not None:
        os.chdir(job_dir)  # job processes inherit it
        namespaces.bind_job_tmp(plan)
    # What /tmp is between jobs: the host's, or the slot's directory bound for good.
    tmp_before = namespaces.tmp_identity()
    private = plan.private_dirs()  # mounted by enter(): the same for the init's life
    if ahead_filter is not None:
        # What it spares is what we still need (mount, umount2, kill(-1)) and what the job
        # process needs to confine itself; the job process loads the final filter last.
        linux.set_no_new_privs()
        linux.load_seccomp_bpf(ahead_filter)
    prepared = prepare_init()
    ctrl.send(READY)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    selector = selectors.DefaultSelector()
    selector.register(ctrl, selectors.EVENT_READ, "ctrl")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    job = _Job()
    while True:
        for key, _ in selector.select():
            if key.data == "child":
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                _reap(job, ctrl, block=False)
                continue
            try:
                data, fds, _, _ = socket.recv_fds(ctrl, 16, 1)
            except InterruptedError:
                continue
            if not data:
                return 0  # the zygote closed the slot
            if data == SWEEP:
                _reap(job, ctrl, block=True, kill=True)
                # The job's processes lived in our mount namespace: undo what they left in
                # it (a failure ends this init, and the zygote drops the slot).
                if namespaces.reset_slot(plan, tmp_before, private):
                    prepared.after_reset()
            if data in (FORK, SWEEP) and len(fds) == 1:
                # After a sweep, the slot's next job process comes with it: one message.
                job.pid = _fork_next(plan, fds[0], ctrl, kept, job_main, prepared)
            else:
                for fd in fds:
                    os.close(fd)
            if data == SWEEP:
                ctrl.send(CLEAN)


def _fork_next(plan: namespaces.NamespacePlan, chan_fd: int, ctrl: socket.socket,
               kept: dict[int, _Handler], job_main: JobMain, prepared: Prepared) -> int:
    # Done here, warm and once, rather than in each job process, where every page its
    # Python writes is a page copied (a failure ends this init).
    namespaces.enter_slot_job(plan)
    try:
        return _fork_job(chan_fd, ctrl, kept, job_main, prepared.before_fork())
    finally:
        prepared.after_fork()


class _Job:
    __slots__ = ("pid",)

    def __init__(self) -> None:
        self.pid = 0  # the job process forked last, until reaped


def _plain(handler: _Handler) -> _Handler:
    """A handler as _signal takes it: SIG_DFL and SIG_IGN as plain ints, not enum members."""
    return int(handler) if isinstance(handler, signal.Handlers) else handler


def _fork_job(chan_fd: int, ctrl: socket.socket, kept: dict[int, _Handler],
              job_main: JobMain, held: tuple[int, ...]) -> int:
    """Fork a job process on ``chan_fd``; 0 if the fork failed (the zygote sees EOF)."""
    # Wrapped and sorted here, where this code is warm, not in the job process, where every
    # page written is a page copied (see SlotAhead.before_fork).
    try:
        chan = _socket.socket(fileno=chan_fd)
    except OSError:
        os.close(chan_fd)
        return 0
    keep = sorted({chan_fd, *held})
    try:
        pid = os.fork()
    except OSError:
        chan.close()
        return 0
    if pid:
        chan.close()
        return pid
    status = 1
    try:
        # _signal and _socket, not signal.signal and socket.socket: their Python layers
        # (enum conversions, socket.py) would copy a few dozen pages in every job process.
        _signal.set_wakeup_fd(-1)
        _signal.signal(_SIGCHLD, _SIG_DFL)
        for signum, handler in kept.items():
            if handler is not None:  # None: set outside Python, left as the init has it
                _signal.signal(signum, handler)
        ctrl.detach()
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, 2**31 - 1)
        status = job_main(chan)
    finally:
        os._exit(status)


def _reap(job: _Job, ctrl: socket.socket, block: bool, kill: bool = False) -> None:
    """Reap our children; report the job process's end. ``kill``: first kill every other
    process of the namespace, and go on until none is left."""
    while True:
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)  # from PID 1: every process of the ns but us
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return  # no child left, so no process: each one descends from us
        except InterruptedError:
            continue
        if pid == 0:
            return
        if pid == job.pid:
            job.pid = 0
            ctrl.send(EXITED + str(status).encode())
