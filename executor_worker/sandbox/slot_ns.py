"""A PID namespace per job slot, kept from one job of the slot to the next (root hosts).

Creating a PID namespace per job means forking a second interpreter per job (the namespace's
init) and tearing the namespace down at its end: a third of a trivial job's CPU. Where the
zygote may re-enter its own PID namespace (root), each slot instead gets one long-lived init
(PID 1 of the slot's namespace, a child of the zygote that does nothing but reap), and the
zygote forks each job's process straight into it (``setns`` there, ``fork``, ``setns`` back):
the job is the zygote's own child, so its wait status needs no relay.

The namespace is the only thing kept, and it is kept empty: after a job's leader is reaped
the zygote asks the init to *sweep* — ``kill(-1, SIGKILL)`` from PID 1 reaches every other
process of the namespace — and the init reaps until it has no child left, which, since every
process of the namespace descends from it or from the reaped leader, means none is left. Only
then does the slot (its uid) go to another job, and only then is its next process forked.
Mount, IPC and UTS namespaces stay per job: each job's process unshares its own, with a
fresh /proc and fresh private tmpfs mounts, so no file, /tmp, IPC object or host name
survives a job. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket

from executor_worker.sandbox import linux, namespaces

SWEEP = b"s"
CLEAN = b"c"
READY = b"r"
_READY_TIMEOUT_S = 10.0


class SlotNs:
    """The zygote's handle on one slot's namespace."""

    def __init__(self, init_pid: int, pidns_fd: int, ctrl: socket.socket) -> None:
        self.init_pid = init_pid
        self.pidns_fd = pidns_fd
        self.ctrl = ctrl  # the zygote's end: SWEEP out, CLEAN back
        #: the job id whose "reaped" waits for the sweep, while one runs
        self.sweeping: str | None = None

    def close(self) -> None:
        if self.pidns_fd >= 0:
            os.close(self.pidns_fd)
            self.pidns_fd = -1
        self.ctrl.close()


def create(own_pidns: int, plan: namespaces.NamespacePlan,
           before_child: list[socket.socket]) -> SlotNs:
    """Fork a new slot init (in a new PID namespace) and return its handle.

    ``before_child``: the zygote's sockets, detached in the child before anything else.
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
                status = _init_main(theirs, plan)
            finally:
                os._exit(status)
    finally:
        if pid != 0:
            linux.setns(own_pidns, linux.CLONE_NEWPID)
    theirs.close()
    try:
        # Its /proc and pid_max are in place before any job's process joins it.
        mine.settimeout(_READY_TIMEOUT_S)
        if mine.recv(16) != READY:
            raise RuntimeError("the slot's init failed to set up its namespace")
        fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, RuntimeError):
        mine.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        raise
    mine.setblocking(False)
    return SlotNs(pid, fd, mine)


def fork_into(slot: SlotNs, own_pidns: int) -> int:
    """fork() into the slot's PID namespace: 0 in the child, its pid (ours) here."""
    linux.setns(slot.pidns_fd, linux.CLONE_NEWPID)
    pid = -1
    try:
        pid = os.fork()
    finally:
        if pid != 0:
            linux.setns(own_pidns, linux.CLONE_NEWPID)
    return pid


def _init_main(ctrl: socket.socket, plan: namespaces.NamespacePlan) -> int:
    """PID 1 of a slot's namespace: reap whatever reaches us; on SWEEP, kill everything
    else in the namespace, reap until no child is left, answer CLEAN."""
    linux.set_parent_death_signal(signal.SIGKILL)  # the zygote gone: the namespace goes
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)  # SIG_DFL: unkillable from inside the ns
    os.setsid()
    # Our own mount namespace, for this namespace's /proc and its pid_max (the bound on
    # the number of processes a job of this slot can have); jobs unshare their own.
    namespaces.enter(plan)
    tmp_before = namespaces.tmp_identity()
    ctrl.send(READY)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    selector = selectors.DefaultSelector()
    selector.register(ctrl, selectors.EVENT_READ, "ctrl")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    while True:
        for key, _ in selector.select():
            if key.data == "child":
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                _reap_all(block=False)
                continue
            try:
                data = ctrl.recv(16)
            except InterruptedError:
                continue
            if not data:
                return 0  # the zygote closed the slot
            if data == SWEEP:
                _sweep()
                # The job's processes joined our mount namespace: undo what they left in it
                # (a failure ends this init, and the zygote drops the slot).
                namespaces.reset_slot(plan, tmp_before)
                ctrl.send(CLEAN)


def _sweep() -> None:
    while True:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)  # from PID 1: every process of the namespace but us
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return  # no child left, so no process: each one descends from us
        except InterruptedError:
            continue


def _reap_all(block: bool) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
