"""The zygote: a pre-forked interpreter that forks one confined child per job.

Started by the supervisor as ``python -I -S`` with an empty environment, before the worker's
secrets could be inherited, and it never receives any: only job directories, limits and the
write ends of the job's output and "done" pipes. It probes the host's layers, optionally
pre-imports heavy modules once, keeps children forked ahead (on root hosts, the slots' inits
fork them: slot_ns.py), reaps every process that ends up under it
(it is a child subreaper, so a job's orphans come back to it) and kills a job's whole
process group when its leader exits or the supervisor asks. Standard library only.

A job that returns from its code says so itself: one byte, its exit code, on a "done" pipe
the supervisor reads (so its result takes no hop through here), which then asks for a kill.
Otherwise the job is reported ``exited`` as soon as its end is known: with a PID namespace,
when the job's init relays the job's wait status, *before* the init exits and the kernel
tears the job's namespaces down (that teardown, ~1-3 ms of mount, IPC and PID namespace
work, is no part of the job's latency). ``reaped`` follows once the job's
last process is gone; only then may the supervisor remove the job directory and give the
slot's uid to another job.

Where the host delegates a cgroup v2 subtree (cgroup.py), each job gets a cgroup of its
own: created at dispatch with the job's limits, joined by the job's process before it is
confined (it gets the cgroup's ``cgroup.procs`` with its ``run`` message), and removed just
before ``reaped`` is reported (killed first if anything is still in it; retried while its
processes die; at exit, every one left).
"""

from __future__ import annotations

import _socket
import collections
import contextlib
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import sys
import time

from executor_worker.sandbox import (
    cgroup,
    linux,
    probe,
    protocol,
    records,
    slot_ns,
    zygote_child,
)

#: Not typing.TYPE_CHECKING (see protocol.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Thread-pool knobs for pre-imported numeric libraries: a forked child inherits no threads,
#: and a pool sized for the host would oversubscribe the job's share of it.
_THREAD_KNOBS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "NUMEXPR_NUM_THREADS")


class Zygote:
    def __init__(self, ctrl: socket.socket, plan: zygote_child.Plan, prefork: int,
                 trace: bool = False, slots: int = 0,
                 slot_dirs: list[str] | None = None) -> None:
        self._ctrl = ctrl
        self._plan = plan
        self._prefork = max(prefork, 1)
        self._trace = trace
        self._idle: collections.deque[tuple[int, socket.socket]] = collections.deque()
        #: pid -> (job id, slot, the child's channel: it reports "confined" on it, and its
        #: init the job's wait status)
        self._jobs: dict[int, tuple[str, int, socket.socket]] = {}
        #: pid -> what the child's channel said so far (see _job_report)
        self._said: dict[int, _Said] = {}
        #: pids whose job was reported exited (from the init's relay), or need not be (the
        #: supervisor read its "done" byte), but not yet reaped
        self._reported: set[int] = set()
        self._t_run: dict[int, int] = {}  # pid -> monotonic ns of the run message (trace)
        # Each child gets a PID namespace of its own: unshare(CLONE_NEWPID) before the fork,
        # then back to ours (setns) so the next unshare may create another.
        self._own_pidns = _own_pidns_if_reenterable() if plan.ns.pid else -1
        #: Where we may re-enter our PID namespace, each slot keeps one (slot_ns.py): one
        #: forked interpreter per job instead of two, no namespace set up and torn down.
        self._slot_count = slots if self._own_pidns >= 0 else 0
        self._slot_ns: dict[int, slot_ns.SlotNs] = {}
        self._ready: dict[int, tuple[int, socket.socket]] = {}  # slot -> its next child
        #: Children are armed ahead (zygote_child.serve_one) where no job cgroup must be
        #: joined first and each slot has a uid of its own: each slot then keeps one
        #: directory for all its jobs (the supervisor empties it between them), which its
        #: namespaces bind over /tmp once.
        self._slot_dirs = list(slot_dirs or ())
        self._arms = (bool(self._slot_count) and plan.cgroup_base is None
                      and plan.uid_base is not None
                      and len(self._slot_dirs) >= self._slot_count)
        self._busy: set[int] = set()  # slots with a job running or being swept
        #: slot -> the "reaped" message that waits for its sweep
        self._after_sweep: dict[int, protocol.Message] = {}
        self._pids: dict[str, int] = {}  # job id -> pid
        #: child pid -> the process group to kill for it, where they differ (an anchor
        #: process that stays our child while the job's init lives in a new PID namespace)
        self._groups: dict[int, int] = {}
        #: sweeper pid -> the job whose "reaped" waits for it (its slot uid is not free
        #: before every process of that uid is dead)
        self._sweepers: dict[int, protocol.Message] = {}
        #: job id -> its cgroup (where the host delegates one, see cgroup.py); removed once
        #: the job's last process is reaped, retried from _cg_leftover while still busy
        self._cgroups: dict[str, str] = {}
        self._cg_leftover: list[str] = []
        self._cg_next = 0
        self._wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wakeup_w)
        self._selector = selectors.DefaultSelector()
        self._selector.register(ctrl, selectors.EVENT_READ, "ctrl")
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, "child")

    @property
    def arms(self) -> bool:
        """Whether each slot keeps one directory for all its jobs, and its job processes
        are armed as they are forked (the supervisor then opens the slots' directories to
        their groups and empties them between jobs)."""
        return self._arms

    def serve(self) -> None:
        try:
            self._serve()
        except (BrokenPipeError, ConnectionResetError):
            # The supervisor closed while we were still reporting: it is gone, as on EOF.
            return

    def _serve(self) -> None:
        self._fill_pool()
        short = False
        while True:
            # While the pool is short, fork one child per turn and look for messages in
            # between: a run or a job's end never waits behind a series of forks.
            for key, _ in self._selector.select(0 if short else None):
                if key.data == "child":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wakeup_r, 4096)
                    self._reap()
                elif key.data == "ctrl":
                    if not self._on_message():
                        return
                elif isinstance(key.data, tuple):
                    self._on_slot(key.data[1])
                else:
                    self._on_child_channel(key.data)
            short = self._fill_pool(at_most=1)

    def _on_message(self) -> bool:
        try:
            message, fds = protocol.recv(self._ctrl)
        except ConnectionResetError:
            # The supervisor closed while our last reports were unread: it is gone.
            message, fds = None, []
        if message is None:
            return False  # supervisor gone: children die with us (parent-death signal)
        try:
            if message["op"] == "run":
                self._dispatch(message, fds)
            elif message["op"] == "kill":
                pid = self._pids.get(message["id"])
                if pid is not None:
                    if message.get("done") is True and not self._trace:
                        # The supervisor has the result (the job's "done" byte): its end
                        # needs no report, only its "reaped" (the trace's times go with
                        # the report, so it is sent when tracing).
                        self._reported.add(pid)
                    self._kill_job(pid)
        finally:
            for fd in fds:
                os.close(fd)
        return True

    def _take_child(self, slot: int) -> tuple[int, socket.socket]:
        if not self._slot_count:
            if not self._idle:
                self._fill_pool(1)
            return self._idle.popleft()
        ready = self._ready.pop(slot, None)
        return ready if ready is not None else self._fork_child(slot)

    def _dispatch(self, message: dict[str, Any], fds: list[int]) -> None:
        slot = int(message["slot"])
        if self._slot_count and not 0 <= slot < self._slot_count:
            raise ValueError(f"slot {slot} out of range")
        extra: list[int] = []
        if self._plan.cgroup_base is not None:
            if self._cg_leftover:
                self._retry_cgroups()
            try:
                extra.append(self._job_cgroup(message))
            except OSError as exc:
                # No cgroup, no job: it never runs with less than the layers reported.
                self._refuse(message["id"], f"cannot create the job's cgroup: {exc}")
                return
        if len(fds) != 3:
            raise ValueError("a run message carries stdout, stderr and the done pipe")
        self._busy.add(slot)
        try:
            while True:
                pid, chan = self._take_child(slot)
                try:
                    protocol.send_to_child(chan, message, [*fds, *extra])
                    break
                except OSError:
                    chan.close()
                    continue  # that child died while idle; take the next
        finally:
            for fd in extra:
                os.close(fd)
        chan.setblocking(False)
        self._jobs[pid] = (message["id"], message["slot"], chan)
        self._pids[message["id"]] = pid
        self._said[pid] = _Said()
        if self._trace:
            self._t_run[pid] = time.monotonic_ns()
        if self._plan.ns.pid and not self._slot_count:
            # The job's init relays the job's status here before it exits: report then.
            self._selector.register(chan, selectors.EVENT_READ, pid)

    def _job_cgroup(self, message: dict[str, Any]) -> int:
        """Create the job's cgroup with its limits; the write end of its cgroup.procs, for
        the child to join it before it is confined."""
        assert self._plan.cgroup_base is not None
        limits = message["limits"]
        job_limits = cgroup.JobLimits(memory_bytes=int(limits["memory"]),
                                      pids=int(limits["nproc"]),
                                      cpu_quota=float(limits.get("cpu_quota", 1.0)))
        while True:
            name = f"job-{self._cg_next}"
            self._cg_next += 1
            try:
                path = cgroup.create(self._plan.cgroup_base, name, job_limits)
                break
            except FileExistsError:
                continue  # left by an earlier zygote, or another worker's
        try:
            fd = cgroup.open_procs(path)
        except OSError:
            if not cgroup.release(path):
                self._cg_leftover.append(path)
            raise
        self._cgroups[message["id"]] = path
        return fd

    def _refuse(self, job_id: str, why: str) -> None:
        protocol.send(self._ctrl, {"op": "exited", "id": job_id, "status": 0,
                                   "setup_error": why})
        protocol.send(self._ctrl, {"op": "reaped", "id": job_id})

    def _send_reaped(self, message: protocol.Message) -> None:
        """The job's last process is gone: its cgroup goes too, then the supervisor hears."""
        path = self._cgroups.pop(message["id"], None)
        if path is not None and not cgroup.release(path):
            self._cg_leftover.append(path)  # still dying after cgroup.kill: retried
        protocol.send(self._ctrl, message)

    def _retry_cgroups(self) -> None:
        self._cg_leftover = [path for path in self._cg_leftover if not cgroup.release(path)]

    def release_cgroups(self, patience_s: float = 2.0) -> None:
        """At exit: no job cgroup is left behind (kill what is in each, wait for it)."""
        leftover = [*self._cgroups.values(), *self._cg_leftover]
        self._cgroups.clear()
        deadline = time.monotonic() + patience_s
        while leftover:
            leftover = [path for path in leftover if not cgroup.release(path)]
            if not leftover or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        self._cg_leftover = leftover

    def _on_child_channel(self, pid: int) -> None:
        job = self._jobs.get(pid)
        said = self._said.get(pid)
        if job is None or said is None:
            return
        job_id, _, chan = job
        eof = _read_channel(chan, said)
        if said.relayed is not None and pid not in self._reported:
            # The job has ended (its init reaped it): the result is final. What the job
            # left running dies as the init exits; the slot stays taken until "reaped".
            self._reported.add(pid)
            self._report_exited(pid, job_id, said.relayed, said)
        if eof or said.relayed is not None:
            self._selector.unregister(chan)

    def _fill_pool(self, wanted: int | None = None, at_most: int = 1 << 30) -> bool:
        """Fork children ahead (at most ``at_most``); True if the pool is still short."""
        if self._slot_count:
            # One child ready per free slot, forked once the slot's last job is swept.
            missing = [slot for slot in range(self._slot_count)
                       if slot not in self._busy and slot not in self._ready]
            for slot in missing[:at_most]:
                self._ready[slot] = self._fork_child(slot)
            return len(missing) > at_most
        forked = 0
        while len(self._idle) < (wanted or self._prefork) and forked < at_most:
            self._idle.append(self._fork_child())
            forked += 1
        return len(self._idle) < (wanted or self._prefork)

    def _zygote_sockets(self) -> list[socket.socket]:
        return [self._ctrl, *(chan for _, chan in self._idle),
                *(chan for _, _, chan in self._jobs.values()),
                *(chan for _, chan in self._ready.values()),
                *(ns.ctrl for ns in self._slot_ns.values())]

    def _slot(self, slot: int) -> slot_ns.SlotNs:
        ns = self._slot_ns.get(slot)
        if ns is None:
            plan = self._plan

            def job_main(chan: _socket.socket) -> int:
                return zygote_child.child_main(chan, plan, in_slot=True)

            ahead = plan.seccomp_split[0] if plan.seccomp_split is not None else None
            job_dir = self._slot_dirs[slot] if self._arms else None

            def prepare_init() -> zygote_child.SlotAhead:
                return zygote_child.prepare_slot_init(plan, slot, job_dir)

            ns = slot_ns.create(self._own_pidns, plan.ns, self._zygote_sockets(), job_main,
                                prepare_init, ahead, job_dir)
            self._slot_ns[slot] = ns
            self._selector.register(ns.ctrl, selectors.EVENT_READ, ("slot", slot))
        return ns

    @staticmethod
    def _slot_key(slot: int) -> int:
        """A slot's job process is the init's child, not ours: it is known by this key
        (never a pid) wherever a pid would be, one job a slot at a time."""
        return -1 - slot

    def _kill_job(self, key: int) -> None:
        if key >= 0:
            _killpg(self._groups.get(key, key))
            return
        ns = self._slot_ns.get(-1 - key)
        if ns is not None:
            self._sweep_ns(-1 - key, ns)  # kills every process of the slot's namespace

    def _sweep_ns(self, slot: int, ns: slot_ns.SlotNs) -> None:
        """Ask the slot's init to sweep, and to fork the slot's next child right after (one
        message, not a sweep and then a fork) unless it has one."""
        mine: socket.socket | None = None
        theirs: socket.socket | None = None
        if slot not in self._ready:
            mine, theirs = protocol.socketpair()
        try:
            sent = ns.sweep(theirs)
        except OSError:
            if mine is not None:
                mine.close()
            self._drop_slot(slot)
            return
        finally:
            if theirs is not None:
                theirs.close()
        if mine is not None:
            if sent:
                self._ready[slot] = (self._slot_key(slot), mine)
            else:
                mine.close()

    def _on_slot(self, slot: int) -> None:
        while True:
            ns = self._slot_ns.get(slot)
            if ns is None:
                return
            try:
                data = ns.ctrl.recv(16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if data == slot_ns.CLEAN:
                ns.sweeping = False
                self._slot_swept(slot)
            elif not data:
                self._drop_slot(slot)  # its init died: the namespace, and all in it, went too
                return
            else:
                status = slot_ns.parse_exited(data)
                if status is not None:
                    self._slot_job_ended(slot, status)

    def _slot_job_ended(self, slot: int, status: int) -> None:
        """The init reaped the slot's job process (wait status ``status``)."""
        key = self._slot_key(slot)
        if key not in self._jobs:
            ready = self._ready.pop(slot, None)
            if ready is not None:
                ready[1].close()  # died before its job came: forked again when wanted
            return
        message = self._end_job(key, status)
        self._sweep_slot(slot, message)

    def _slot_swept(self, slot: int) -> None:
        self._busy.discard(slot)
        reaped = self._after_sweep.pop(slot, None)
        if reaped is not None:
            self._send_reaped(reaped)

    def _drop_slot(self, slot: int) -> None:
        ns = self._slot_ns.pop(slot, None)
        if ns is not None:
            self._selector.unregister(ns.ctrl)
            with contextlib.suppress(ProcessLookupError):
                os.kill(ns.init_pid, signal.SIGKILL)
            ns.close()
        ready = self._ready.pop(slot, None)
        if ready is not None:
            ready[1].close()  # it lived in that namespace: gone with it
        key = self._slot_key(slot)
        if key in self._jobs:
            # Its job died with the namespace (killed: the init was PID 1).
            self._after_sweep[slot] = self._end_job(key, signal.SIGKILL)
        self._slot_swept(slot)

    def _fork_child(self, slot: int | None = None) -> tuple[int, socket.socket]:
        mine, theirs = protocol.socketpair()
        if slot is not None:
            # The slot's init forks it (asynchronously: the run message waits in the
            # channel until the process reads it).
            try:
                self._slot(slot).fork_job(theirs)
            except OSError:
                self._drop_slot(slot)
                raise
            finally:
                theirs.close()
            return self._slot_key(slot), mine
        pid = self._fork_in_own_pidns(mine) if self._plan.ns.pid else os.fork()
        if pid == 0:
            status = zygote_child.SETUP_FAILED_EXIT
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                # Forget the zygote's channels before anything else: detach so a later
                # garbage collection cannot close a number the job reuses.
                for sock in [mine, *self._zygote_sockets()]:
                    sock.detach()
                self._slot_ns.clear()
                self._ready.clear()
                self._idle.clear()
                self._jobs.clear()
                self._pids.clear()
                self._groups.clear()
                self._said.clear()
                self._reported.clear()
                os.closerange(3, theirs.fileno())
                os.closerange(theirs.fileno() + 1, 2**31 - 1)
                status = zygote_child.child_main(theirs, self._plan)
            finally:
                os._exit(status)
        theirs.close()
        return pid, mine

    def _fork_in_own_pidns(self, mine: socket.socket) -> int:
        """fork() into a new PID namespace: 0 in the child (its PID 1), its pid here."""
        if self._own_pidns >= 0:
            # Root (or a user namespace owning our PID namespace): unshare, fork, and setns
            # back so that the next unshare may create another namespace.
            linux.unshare(linux.CLONE_NEWPID)
            pid = -1
            try:
                pid = os.fork()
            finally:
                if pid != 0:
                    linux.setns(self._own_pidns, linux.CLONE_NEWPID)
            return pid
        # Unprivileged: our PID namespace is the host's, so setns back is refused. An anchor
        # child unshares and forks the job's init; it stays our child (it dies with us, the
        # init dies with it: parent-death signals), waits for the init and mirrors its end.
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        anchor = os.fork()
        if anchor == 0:
            os.close(read_end)
            init = -1
            try:
                linux.set_parent_death_signal(signal.SIGKILL)
                linux.unshare(linux.CLONE_NEWPID)
                init = os.fork()
                if init == 0:
                    os.close(write_end)
                    return 0
                os.write(write_end, str(init).encode())
                os.close(write_end)
                _, status = os.waitpid(init, 0)
                if os.WIFSIGNALED(status):
                    signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
                    os.kill(os.getpid(), os.WTERMSIG(status))
                os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
            finally:
                if init != 0:
                    os._exit(1)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as fh:
            data = fh.read()
        if not data:
            mine.close()
            raise RuntimeError("could not fork into a new PID namespace")
        self._groups[anchor] = int(data)
        return anchor

    def _reap(self) -> None:
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None:
                return
            pid = info.si_pid
            job = self._jobs.pop(pid, None)
            if job is not None:
                # The leader is still an unreaped zombie, so its pid (the group id) cannot
                # be reused yet: whatever it left running in its group dies now.
                _killpg(self._groups.get(pid, pid))
            _, status = os.waitpid(pid, 0)
            if job is None:
                self._idle = collections.deque(c for c in self._idle if c[0] != pid)
                for slot, ns in list(self._slot_ns.items()):
                    if ns.init_pid == pid:
                        self._drop_slot(slot)
                self._groups.pop(pid, None)
                reaped = self._sweepers.pop(pid, None)
                if reaped is not None:
                    self._send_reaped(reaped)
                continue
            self._jobs[pid] = job
            message = self._end_job(pid, status)
            slot = job[1]
            if self._plan.uid_base is not None and self._plan.seccomp_bpf is None:
                self._sweepers[self._sweep(self._plan.uid_base + slot)] = message
            else:
                self._send_reaped(message)
        if self._cg_leftover:
            self._retry_cgroups()

    def _end_job(self, key: int, status: int) -> protocol.Message:
        """The job's process has ended (wait status ``status``): report its end unless it
        was reported already, forget it; returns the "reaped" message its slot owes."""
        job_id, _, chan = self._jobs.pop(key)
        self._pids.pop(job_id, None)
        self._groups.pop(key, None)
        said = self._said.pop(key, _Said())
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(chan)
        _read_channel(chan, said)
        chan.close()
        if key in self._reported:
            self._reported.discard(key)
        else:
            self._report_exited(key, job_id, status, said)
        message: protocol.Message = {"op": "reaped", "id": job_id}
        if self._trace:
            message["t_reaped"] = time.monotonic_ns()
        return message

    def _sweep_slot(self, slot: int, reaped: protocol.Message) -> None:
        """The slot's namespace is emptied before it is reported free: nothing of this job
        may meet the next one (the job's uid cannot leave the namespace either)."""
        ns = self._slot_ns.get(slot)
        if ns is None:
            self._busy.discard(slot)
            self._send_reaped(reaped)
            return
        self._after_sweep[slot] = reaped
        self._sweep_ns(slot, ns)

    def _report_exited(self, pid: int, job_id: str, status: int, said: _Said) -> None:
        status, setup_error = _job_report(said, status)
        message: protocol.Message = {"op": "exited", "id": job_id, "status": status,
                                     "setup_error": setup_error}
        if self._trace:
            message["t_run"] = self._t_run.get(pid, 0)
            message.update(said.times)
            message["t_exited"] = time.monotonic_ns()
        self._t_run.pop(pid, None)
        protocol.send(self._ctrl, message)

    def _sweep(self, uid: int) -> int:
        """Without seccomp a job can setsid() out of its group; its uid cannot escape."""
        pid = os.fork()
        if pid == 0:
            try:
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)  # every process of this uid but ourselves
            finally:
                os._exit(0)
        return pid


def _own_pidns_if_reenterable() -> int:
    """A descriptor of our PID namespace if we may setns() back into it, else -1."""
    fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            linux.unshare(linux.CLONE_NEWPID)
            linux.setns(fd, linux.CLONE_NEWPID)
        except OSError:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if status == 0:
        return fd
    os.close(fd)
    return -1


class _Said:
    """What a child's channel carried: "confined" from the child, "setup_failed" from it
    before that, "status" from the job's init."""

    __slots__ = ("confined", "error", "relayed", "times")

    def __init__(self) -> None:
        self.times: dict[str, int] = {}  # monotonic ns the child and its init noted
        self.confined = False
        self.error: str | None = None
        self.relayed: int | None = None


def _read_channel(chan: socket.socket, said: _Said) -> bool:
    """Take every pending message into ``said``; True at EOF (or a broken channel)."""
    while True:
        try:
            message, fds = protocol.recv(chan)
        except BlockingIOError:
            return False
        except (OSError, ValueError):
            return True
        for fd in fds:
            os.close(fd)
        if message is None:
            return True
        op = message.get("op")
        if op == "confined":
            said.confined = True
            said.times.update(t_child_got_run=_ns(message.get("t_received")),
                              t_confined=_ns(message.get("t")))
            times = message.get("times")
            if isinstance(times, dict):
                said.times.update((str(k), _ns(v)) for k, v in list(times.items())[:8])
        elif op == "setup_failed" and not said.confined:
            said.error = str(message.get("error"))[:2000]
        elif op == "status" and isinstance(message.get("status"), int):
            said.relayed = message["status"]  # from the job's init: the job's own ending
            said.times["t_job_ended"] = _ns(message.get("t"))


def _ns(value: object) -> int:
    return value if isinstance(value, int) else 0


def _job_report(said: _Said, status: int) -> tuple[int, str | None]:
    """The job's wait status and, if its sandbox was never complete, why.

    Only the child's channel says so, and the child closes it before the job's code runs:
    what the job prints or exits with is always the job's result.
    """
    if not said.confined:
        code = os.waitstatus_to_exitcode(status)
        return status, said.error or f"the job process ended during sandbox setup (status {code})"
    return (said.relayed if said.relayed is not None else status), None


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _preimport(modules: list[str]) -> dict[str, str]:
    for knob in _THREAD_KNOBS:
        os.environ.setdefault(knob, "1")
    failures = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a missing optional module is not fatal
            failures[name] = f"{type(exc).__name__}: {exc}"
    return failures


def _site_without_pth(path: list[str]) -> None:
    """What ``site`` gives a job, without running any ``.pth`` code in the zygote (it is
    started with -S): the module path the supervisor learnt, and the builtins ``exit``,
    ``quit``, ``help``, ``copyright``, ``credits`` and ``license``."""
    sys.path[:] = path
    import site  # with -S, importing it sets nothing up

    site.setquit()
    site.setcopyright()
    site.sethelper()


def _warm_up() -> None:
    """Do once here what every job would otherwise do first: the interpreter builds some
    state on first use, and a job process builds it anew each time. The first compile()
    of a process creates the ~120 AST node types (~0.7 ms a job, seen with perf)."""
    namespace: dict[str, object] = {}
    exec(compile("value = [1, 2.0, 'x']\n", "main.py", "exec"), namespace)
    json.loads(json.dumps({"inputs": namespace["value"]}))


def main(argv: list[str]) -> None:
    config = json.loads(argv[1])
    if "sys_path" in config:
        _site_without_pth(list(config["sys_path"]))
    ctrl = socket.socket(fileno=int(argv[2]))
    linux.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != config["supervisor_pid"]:
        return  # the supervisor died before we armed the parent-death signal
    linux.set_child_subreaper()
    failures = _preimport(config["preimport"])
    probe_config = probe.ProbeConfig(
        work_root=config["work_root"],
        uid_base=config["uid_base"],
        disabled=frozenset(config["disabled"]),
        allow_exec=config["allow_exec"],
        extra_read_paths=tuple(config["extra_read_paths"]),
        nproc=config["nproc"],
        tmp_bytes=config["tmp_bytes"],
    )
    fake_cgroup = config.get("cgroup_fs")
    if fake_cgroup:
        # A test's fake cgroupfs (see cgroup.py): never from the worker's settings.
        cgroup.emulate_kernel(True)
        probe_config = records.replace(probe_config, cgroup_mount=fake_cgroup[0],
                                           cgroup_self=fake_cgroup[1])
    plan, layers = probe.detect(probe_config)
    for program in (*(plan.seccomp_split or ()), plan.seccomp_bpf):
        if program is not None:
            linux.prepare_seccomp_bpf(program)
    # Entering a user namespace changes our credentials, which clears the death signal.
    linux.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != config["supervisor_pid"]:
        return
    zygote = Zygote(ctrl, plan, config["prefork"], bool(config.get("trace")),
                    int(config.get("slots", 0)), [str(d) for d in config.get("slot_dirs", ())])
    protocol.send(ctrl, {
        "op": "hello", "pid": os.getpid(), "layers": list(layers), "notes": plan.notes,
        "arms": zygote.arms,
        "preimport_failures": failures,
        "read_only": list(plan.landlock_policy.read_only) if plan.landlock_policy else [],
    })
    _warm_up()
    # Move everything allocated so far out of the collector's reach: a collection in a child
    # would otherwise write to (and so copy) every page of the zygote's heap.
    gc.collect()
    gc.freeze()
    try:
        zygote.serve()
    finally:
        zygote.release_cgroups()


if __name__ == "__main__":
    main(sys.argv)
