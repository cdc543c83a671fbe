"""The zygote: a pre-forked interpreter that forks one confined child per job.

Started by the supervisor as ``python -I`` with an empty environment, before the worker's
secrets could be inherited, and it never receives any: only job directories, limits and the
write ends of the job's output pipes. It probes the host's layers, optionally pre-imports
heavy modules once, keeps children forked ahead, reaps every process that ends up under it
(it is a child subreaper, so a job's orphans come back to it) and kills a job's whole
process group when its leader exits or the supervisor asks. Standard library only.
"""

from __future__ import annotations

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
from typing import Any

from executor_worker.sandbox import linux, probe, protocol, zygote_child

#: Thread-pool knobs for pre-imported numeric libraries: a forked child inherits no threads,
#: and a pool sized for the host would oversubscribe the job's share of it.
_THREAD_KNOBS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "NUMEXPR_NUM_THREADS")


class Zygote:
    def __init__(self, ctrl: socket.socket, plan: zygote_child.Plan, prefork: int) -> None:
        self._ctrl = ctrl
        self._plan = plan
        self._prefork = max(prefork, 1)
        self._idle: collections.deque[tuple[int, socket.socket]] = collections.deque()
        #: pid -> (job id, slot, the child's channel: it reports "confined" on it, and its
        #: init the job's wait status)
        self._jobs: dict[int, tuple[str, int, socket.socket]] = {}
        # Each child gets a PID namespace of its own: unshare(CLONE_NEWPID) before the fork,
        # then back to ours (setns) so the next unshare may create another.
        self._own_pidns = _own_pidns_if_reenterable() if plan.ns.pid else -1
        self._pids: dict[str, int] = {}  # job id -> pid
        #: child pid -> the process group to kill for it, where they differ (an anchor
        #: process that stays our child while the job's init lives in a new PID namespace)
        self._groups: dict[int, int] = {}
        self._sweep_uids: dict[int, int] = {}  # sweeper pid -> slot uid
        self._wakeup_r, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(wakeup_w)
        self._selector = selectors.DefaultSelector()
        self._selector.register(ctrl, selectors.EVENT_READ, "ctrl")
        self._selector.register(self._wakeup_r, selectors.EVENT_READ, "child")

    def serve(self) -> None:
        self._fill_pool()
        while True:
            for key, _ in self._selector.select():
                if key.data == "child":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wakeup_r, 4096)
                    self._reap()
                elif not self._on_message():
                    return
            self._fill_pool()

    def _on_message(self) -> bool:
        message, fds = protocol.recv(self._ctrl)
        if message is None:
            return False  # supervisor gone: children die with us (parent-death signal)
        try:
            if message["op"] == "run":
                self._dispatch(message, fds)
            elif message["op"] == "kill":
                pid = self._pids.get(message["id"])
                if pid is not None:
                    _killpg(self._groups.get(pid, pid))
        finally:
            for fd in fds:
                os.close(fd)
        return True

    def _dispatch(self, message: dict[str, Any], fds: list[int]) -> None:
        while True:
            if not self._idle:
                self._fill_pool(1)
            pid, chan = self._idle.popleft()
            try:
                protocol.send(chan, message, fds)
                break
            except OSError:
                chan.close()
                continue  # that child died while idle; take the next
        chan.setblocking(False)
        self._jobs[pid] = (message["id"], message["slot"], chan)
        self._pids[message["id"]] = pid

    def _fill_pool(self, wanted: int | None = None) -> None:
        while len(self._idle) < (wanted or self._prefork):
            self._idle.append(self._fork_child())

    def _fork_child(self) -> tuple[int, socket.socket]:
        mine, theirs = protocol.socketpair()
        pid = self._fork_in_own_pidns(mine) if self._plan.ns.pid else os.fork()
        if pid == 0:
            status = zygote_child.SETUP_FAILED_EXIT
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                # Forget the zygote's channels before anything else: detach so a later
                # garbage collection cannot close a number the job reuses.
                running = [chan for _, _, chan in self._jobs.values()]
                for sock in [self._ctrl, mine, *(chan for _, chan in self._idle), *running]:
                    sock.detach()
                self._idle.clear()
                self._jobs.clear()
                self._pids.clear()
                self._groups.clear()
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
                self._groups.pop(pid, None)
                self._sweep_uids.pop(pid, None)
                continue
            job_id, slot, chan = job
            self._pids.pop(job_id, None)
            self._groups.pop(pid, None)
            if self._plan.uid_base is not None and self._plan.seccomp_bpf is None:
                self._sweep(self._plan.uid_base + slot)
            status, setup_error = _job_report(chan, status)
            chan.close()
            protocol.send(self._ctrl, {"op": "exited", "id": job_id, "status": status,
                                       "setup_error": setup_error})

    def _sweep(self, uid: int) -> None:
        """Without seccomp a job can setsid() out of its group; its uid cannot escape."""
        pid = os.fork()
        if pid == 0:
            try:
                os.setresuid(uid, uid, uid)
                os.kill(-1, signal.SIGKILL)  # every process of this uid but ourselves
            finally:
                os._exit(0)
        self._sweep_uids[pid] = uid


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


def _job_report(chan: socket.socket, status: int) -> tuple[int, str | None]:
    """The job's wait status and, if its sandbox was never complete, why.

    Only the child's channel says so, and the child closes it before the job's code runs:
    what the job prints or exits with is always the job's result.
    """
    confined, error, relayed = False, None, None
    while True:
        try:
            message, fds = protocol.recv(chan)
        except (BlockingIOError, OSError, ValueError):
            break
        for fd in fds:
            os.close(fd)
        if message is None:
            break
        op = message.get("op")
        if op == "confined":
            confined = True
        elif op == "setup_failed" and not confined:
            error = str(message.get("error"))[:2000]
        elif op == "status" and isinstance(message.get("status"), int):
            relayed = message["status"]  # from the job's init: the job's own ending
    if not confined:
        code = os.waitstatus_to_exitcode(status)
        return status, error or f"the job process ended during sandbox setup (status {code})"
    return (relayed if relayed is not None else status), None


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


def main(argv: list[str]) -> None:
    config = json.loads(argv[1])
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
    plan, layers = probe.detect(probe_config)
    # Entering a user namespace changes our credentials, which clears the death signal.
    linux.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != config["supervisor_pid"]:
        return
    protocol.send(ctrl, {
        "op": "hello", "pid": os.getpid(), "layers": list(layers), "notes": plan.notes,
        "preimport_failures": failures,
        "read_only": list(plan.landlock_policy.read_only) if plan.landlock_policy else [],
    })
    # Move everything allocated so far out of the collector's reach: a collection in a child
    # would otherwise write to (and so copy) every page of the zygote's heap.
    gc.collect()
    gc.freeze()
    Zygote(ctrl, plan, config["prefork"]).serve()


if __name__ == "__main__":
    main(sys.argv)
