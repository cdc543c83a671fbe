"""One job process: forked ahead of time (by the zygote, or on root hosts by its slot's init,
see slot_ns.py), confined before or when its job arrives.

Before a job exists the child does the job-independent, slow part: its own session;
unless it was born in its slot's (see slot_ns.py, where the init makes the IPC namespace
and the Landlock ruleset before the fork), its own IPC, mount and UTS namespaces (see
namespaces.py) and a PID namespace (the forked process is then a new namespace's init and
the job runs in its only child), and the Landlock ruleset, while paths can still be
opened; all of the seccomp filter but the calls confining still needs (inherited from the
slot's init, or loaded here).

Then it confines itself: it chdirs into the job directory, adds it to the ruleset, binds it
over /tmp, takes the job's stdout/stderr, closes every other descriptor (the zygote's and
the supervisor's channels included), sets rlimits, drops to the slot's uid (or drops
capabilities), sets no-new-privs, enforces Landlock and the rest of seccomp. Where each
slot keeps one directory for all its jobs (root hosts with per-slot uids, no job
cgroups), the slot's init has made it our working directory, allowed it in the ruleset and
bound it over /tmp, and the child is *armed*: all of that but the descriptors and rlimits
happens before the job exists (no privilege is needed for what is left); elsewhere it all
happens when the ``run`` message arrives. Last it tells the zygote over its channel that it
is confined, closes that channel, and only then reads and runs the code. Any failure before the code
runs aborts the job (a weaker sandbox than reported is never used) and is reported over
the channel: nothing the job prints or exits with can pass for a setup failure. When the
code returns, its exit code goes to the supervisor as one byte on the job's "done" pipe,
so the result does not wait for this interpreter's exit. Standard library only.
"""

from __future__ import annotations

import _socket
import builtins
import contextlib
import json
import os
import resource
import signal
import sys
import time
import types

from executor_worker.sandbox import landlock, linux, namespaces, protocol
from executor_worker.sandbox.records import field, record

#: Not typing.TYPE_CHECKING (see protocol.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Exit status and stderr line of a child whose sandbox could not be set up. For people
#: reading logs only: the zygote learns of setup failures over the child's channel.
SETUP_FAILED_EXIT = 119
SETUP_FAILED_MARKER = "llmexec-sandbox: setup failed:"
_PAGE = os.sysconf("SC_PAGE_SIZE")


@record
class Plan:
    """Which layers the zygote found usable and will apply to every child."""

    netns: bool = False  # the zygote (so every job) lives in an empty network namespace
    userns: bool = False  # each job gets its own user namespace
    uid_base: int | None = None
    landlock_abi: int = 0
    landlock_policy: landlock.Policy | None = None
    seccomp_bpf: bytes | None = None
    #: seccomp_bpf split in two stacked programs (see seccomp_filter.compile_filters): the
    #: first is loaded before the job arrives, the second last. Used instead when set.
    seccomp_split: tuple[bytes, bytes] | None = None
    ns: namespaces.NamespacePlan = field(default_factory=namespaces.NamespacePlan)
    nproc: int = 64
    #: The delegated cgroup v2 directory job cgroups go under (the zygote's, see cgroup.py)
    cgroup_base: str | None = None
    notes: dict[str, str] = field(default_factory=dict)


@record
class Prepared:
    """What a child set up before its job arrived."""

    ruleset: int = -1  # Landlock ruleset fd holding the read-only rules
    baseline_vm: int = 0  # bytes mapped before the job: RLIMIT_AS comes on top
    zygote_pid: int = 0
    #: monotonic ns of the child's set-up steps (reported with "confined", for SANDBOX_TRACE)
    times: dict[str, int] = field(default_factory=dict)
    main: types.ModuleType = field(default_factory=lambda: types.ModuleType("__main__"))
    #: The HOME os.environ was already set up for (by the slot's init), "" if none
    environment: str = ""
    #: Armed (see serve_one): the slot's directory, as the supervisor names it in the job's
    #: run message ("" if not armed), the slot, and the job's home there
    armed_dir: str = ""
    armed_slot: int = -1
    armed_home: str = ""


def child_main(chan: _socket.socket, plan: Plan, in_slot: bool = False) -> int:
    """Everything a freshly forked child does; returns the exit status for os._exit.

    ``in_slot``: forked by its slot's init (slot_ns.py), inside the slot's PID, mount and
    UTS namespaces: this process is the job, the init its parent.
    """
    times = {"t_forked": time.monotonic_ns()}
    os.setsid()  # own session and process group: killpg reaches every descendant
    if plan.ns.pid:
        linux.set_parent_death_signal(signal.SIGKILL)  # init gone: the kernel kills the job
    if not in_slot:  # else born in its slot's (see namespaces.enter_slot_job)
        namespaces.enter(plan.ns)
    times["t_namespaces"] = time.monotonic_ns()
    if plan.ns.pid and not in_slot:
        job = os.fork()
        if job:
            return _init(chan, job)
        times["t_job_forked"] = time.monotonic_ns()
    ready = prepare(plan, _slot_ahead if in_slot else None)
    ready.times.update(times, t_prepared=time.monotonic_ns())
    return serve_one(chan, plan, ready)


def _init(chan: _socket.socket, job: int) -> int:
    """PID 1 of the job's namespace: reap what the job leaves, relay the job's own wait
    status (init cannot be killed from inside its namespace, so the job must not be it),
    then exit: the kernel kills whatever of the job is still running."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        if pid == job:
            with contextlib.suppress(OSError):
                _tell(chan.fileno(), {"op": "status", "status": status,
                                      "t": time.monotonic_ns()})
            return 0


class SlotAhead:
    """What a slot's init (slot_ns.py) prepares for the job processes it forks: once
    (held rule descriptors, text layers, environment), or before each fork (the ruleset):
    they inherit it with the fork instead of each building it. In a job process, every page
    the setup's Python writes is a copy of the init's (~2.5 us each here), where the init's
    code is warm. The seccomp ahead filter comes the same way (the init loads it once:
    ~0.35 ms a job, JIT included)."""

    def __init__(self, plan: Plan, slot: int = -1, job_dir: str | None = None) -> None:
        """``job_dir``: the slot's own directory, which all its jobs use (the init's
        working directory, bound over /tmp where the plan says so): its job processes are
        then armed for it as soon as they are forked."""
        self.slot = slot
        self.job_dir = job_dir or ""
        self.rules: landlock.HeldRules | None = None
        self.next_ruleset = -1  # made by before_fork, inherited by the job process
        if plan.landlock_abi and plan.landlock_policy is not None:
            # The private tmpfs mounts exist only in the slot's mount namespace; the slot's
            # directory is our working directory (its path may be hidden by the bind).
            read_write = (*plan.ns.private_dirs(), *((".",) if job_dir else ()))
            self.rules = landlock.HeldRules(plan.landlock_abi, plan.landlock_policy,
                                            read_write)
        _open_text_layers()
        #: The job's home, and its environment set here once, when it is the same for
        #: every job (its directory bound over /tmp, or the slot's own): ~0.2 ms a job,
        #: os.environ is slow to rebuild. "" if each job has its own.
        self.environment = namespaces.JOB_TMP if plan.ns.job_tmp() else (job_dir or "")
        if self.environment:
            _job_environment(self.environment)
        # A job process maps what its init mapped; what it adds before its job counts
        # towards the job's RLIMIT_AS budget (a few pages).
        self.baseline_vm = _mapped_bytes()
        self.next = self._record()

    def _record(self) -> Prepared:
        # The job process's parent is this init: its pid there is ours here.
        return Prepared(ruleset=self.next_ruleset, baseline_vm=self.baseline_vm,
                        zygote_pid=os.getpid(), environment=self.environment,
                        armed_dir=self.job_dir, armed_slot=self.slot,
                        armed_home=self.environment if self.job_dir else "")

    def after_reset(self) -> None:
        """The slot's private tmpfs were mounted anew (namespaces.reset_slot)."""
        if self.rules is not None:
            self.rules.reopen_read_write()
            self._drop_ruleset()  # its rules are for the old ones

    def _drop_ruleset(self) -> None:
        if self.next_ruleset >= 0:
            os.close(self.next_ruleset)
            self.next_ruleset = -1

    def before_fork(self) -> tuple[int, ...]:
        """What the next job process finds ready (see prepare): its Prepared, with its
        Landlock ruleset (all but its job directory; the init keeps the descriptors of the
        rules' paths) and its ``__main__``. Returns the descriptors it keeps."""
        if self.rules is not None and self.next_ruleset < 0:
            self.next_ruleset = self.rules.ruleset()
        if not self.job_dir or self.next.ruleset != self.next_ruleset:
            # Armed, one record serves every job process of the slot until its ruleset is
            # made anew: each one writes only its own copy of it (its times, its
            # __main__), never ours.
            self.next = self._record()
        return (self.next_ruleset,) if self.next_ruleset >= 0 else ()

    def after_fork(self) -> None:
        # Armed, every job of the slot has the same rules (its directory is the slot's): one
        # ruleset serves them all (a job process enforces it, and closes its copy, before
        # its job runs; a domain once made never changes). Else each job process adds its
        # own directory to a ruleset of its own.
        if not self.job_dir:
            self._drop_ruleset()


#: Set in a slot's init (prepare_slot_init); job processes find it there after the fork.
_slot_ahead: SlotAhead | None = None


def prepare_slot_init(plan: Plan, slot: int = -1, job_dir: str | None = None) -> SlotAhead:
    global _slot_ahead
    _slot_ahead = SlotAhead(plan, slot, job_dir)
    return _slot_ahead


def prepare(plan: Plan, ahead: SlotAhead | None = None) -> Prepared:
    """Job-independent setup, done right after the fork so a job does not wait for it.

    ``ahead``: what the slot's init prepared for all its job processes, which also loaded
    the seccomp ahead filter.
    """
    if plan.userns and not plan.ns.job_tmp():
        _enter_userns()
    if ahead is not None:
        return ahead.next
    ready = Prepared(zygote_pid=os.getppid())
    if plan.landlock_abi and plan.landlock_policy is not None:
        ready.ruleset = landlock.build_ruleset(plan.landlock_abi, plan.landlock_policy)
        # The private tmpfs mounts exist only in this mount namespace: granted here.
        landlock.allow_read_write(ready.ruleset, plan.landlock_abi, plan.ns.private_dirs(),
                                  plan.landlock_policy.allow_exec)
    ready.baseline_vm = _mapped_bytes()
    if plan.seccomp_split is not None:
        # All of the filter but the calls _confine still makes; the rest comes last there.
        linux.set_no_new_privs()
        linux.load_seccomp_bpf(plan.seccomp_split[0])
    _open_text_layers()
    return ready


def _mapped_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * _PAGE


def _open_text_layers() -> None:
    # Text layers over fds 0-2 now; dup2 swaps the files underneath them at dispatch.
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace",  # noqa: SIM115
                      closefd=False, buffering=1)


def _enter_userns() -> None:
    # No id maps: writing them costs ~0.45 ms, and an unmapped job (it sees uid 65534)
    # still creates files as its real uid and can create no namespace of its own.
    linux.unshare(linux.CLONE_NEWUSER)


def serve_one(chan: _socket.socket, plan: Plan, ready: Prepared) -> int:
    """Wait for the job, confine, run it; returns the exit status for os._exit.

    Armed (root hosts with per-slot uids and no job cgroups: the slot's init prepared it,
    see SlotAhead), everything but the job's descriptors and rlimits is confined before the
    job exists, and only those are left for its ``run``, which must name the slot's
    directory: the process works in it already.
    """
    armed: str | None = None
    arm_error: BaseException | None = None
    if ready.armed_dir:
        try:
            _arm(plan, ready, chan.fileno())
            armed = ready.armed_dir
        except BaseException as exc:  # the job that comes is refused with this reason
            arm_error = exc
        ready.times["t_armed"] = time.monotonic_ns()
    message, fds = protocol.recv_from_zygote(chan)
    received = time.monotonic_ns()
    if message is None or message.get("op") != "run" or len(fds) not in (3, 4):
        return 0  # the zygote is shutting down its pool
    out_fd, err_fd, done_fd = fds[:3]
    chan_fd = chan.detach()
    try:
        if arm_error is not None:
            raise arm_error
        if armed is not None:
            if (message["dir"] != armed or message["slot"] != ready.armed_slot
                    or len(fds) != 3):
                raise RuntimeError("the job is not the one this process was armed for")
            _take_descriptors(out_fd, err_fd, (chan_fd, done_fd))
            _set_rlimits(message["limits"], plan, ready.baseline_vm)
        else:
            if len(fds) == 4:
                _join_cgroup(fds[3])
            elif plan.cgroup_base is not None:
                raise RuntimeError("the zygote sent no cgroup for this job")
            _confine(message, plan, ready, out_fd, err_fd, chan_fd, done_fd)
        # The last thing before the code: from here on nothing the job does reaches the
        # zygote but its exit status.
        os.write(chan_fd, protocol.confined(received, time.monotonic_ns(), ready.times))
        os.close(chan_fd)
    except BaseException as exc:  # any failure means: do not run the code
        _report_setup_failure(exc, chan_fd)
        return SETUP_FAILED_EXIT
    status = _execute(ready.main)
    # The job's code is done and its output flushed: say so, so that its result need not
    # wait for this process to exit (unmapping a forked interpreter costs ~1-2 ms) and its
    # init to relay the status. The job could write this byte itself, but all it can say
    # is an exit code of its own, and the zygote kills the job on reading it.
    with contextlib.suppress(OSError):
        os.write(done_fd, bytes([status & 0xFF]))
    return status


def _join_cgroup(procs_fd: int) -> None:
    """Move this process (and so all it will fork) into the job's cgroup, before anything
    of the job runs: the zygote opened its cgroup.procs, so the kernel checks the zygote's
    credentials, not the uid this process is about to take."""
    try:
        os.write(procs_fd, str(os.getpid()).encode())
    finally:
        os.close(procs_fd)


def _tell(chan_fd: int, message: dict[str, Any]) -> None:
    os.write(chan_fd, json.dumps(message).encode())


def _confine(message: dict[str, Any], plan: Plan, ready: Prepared, out_fd: int, err_fd: int,
             chan_fd: int, done_fd: int) -> None:
    """Everything at once, when the job is there."""
    home = _enter_job_dir(plan, ready, message["dir"])
    _take_descriptors(out_fd, err_fd, (ready.ruleset, chan_fd, done_fd))
    _set_rlimits(message["limits"], plan, ready.baseline_vm)
    _drop_privileges(plan, ready, message["slot"], home)


def _arm(plan: Plan, ready: Prepared, chan_fd: int) -> None:
    """Ahead of the job, in its slot's directory (our working directory, allowed in the
    ruleset and bound over /tmp by the init): every layer but its descriptors and rlimits
    (those come with it). Lowering rlimits and closing descriptors need no privilege."""
    if plan.userns and plan.ns.job_tmp():
        _enter_userns()  # after the bind: the job's user namespace owns no mounts
    _drop_privileges(plan, ready, ready.armed_slot, ready.armed_home)
    # The ruleset (enforced now) goes; the channel stays.
    os.closerange(3, chan_fd)
    os.closerange(chan_fd + 1, 2**31 - 1)


def _enter_job_dir(plan: Plan, ready: Prepared, job_dir: str) -> str:
    """chdir into it, allow it in the Landlock ruleset, bind it over /tmp; the job's home."""
    os.chdir(job_dir)
    ruleset = ready.ruleset
    if ruleset >= 0:
        assert plan.landlock_policy is not None
        landlock.allow_read_write(ruleset, plan.landlock_abi, (job_dir,),
                                  plan.landlock_policy.allow_exec)
    if namespaces.bind_job_tmp(plan.ns):
        home = namespaces.JOB_TMP  # the job's directory, under the one name it can reach
        if plan.userns:
            _enter_userns()  # after the bind: the job's user namespace owns no mounts
    else:
        home = job_dir
    return home


def _take_descriptors(out_fd: int, err_fd: int, keep: tuple[int, ...]) -> None:
    """The job's stdin (/dev/null), stdout and stderr; nothing else survives but ``keep``:
    the ruleset (closed once enforced), the channel (closed before the code runs) and the
    write end of the job's "done" pipe (one byte, read once). No path to the supervisor or
    another job."""
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    low = 3
    for fd in sorted(fd for fd in keep if fd >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 2**31 - 1)  # close_range() makes the size of the range free


def _drop_privileges(plan: Plan, ready: Prepared, slot: int, home: str) -> None:
    """The slot's uid (or no capabilities), no-new-privs, Landlock, seccomp, environment."""
    ruleset = ready.ruleset
    if plan.uid_base is not None:
        uid = plan.uid_base + slot
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    else:
        # Root without the uid layer, or a user namespace (the job's or the zygote's) holds
        # capabilities; dropping what we do not have is a no-op.
        linux.drop_capabilities()
    # After the uid change: the kernel clears the parent-death signal on credential changes.
    linux.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != ready.zygote_pid:
        raise RuntimeError("zygote exited during setup")  # reparented: nobody would reap us
    linux.set_no_new_privs()
    if ruleset >= 0:
        landlock.restrict_self(ruleset)
    if plan.seccomp_split is not None:
        linux.load_seccomp_bpf(plan.seccomp_split[1])
    elif plan.seccomp_bpf is not None:
        linux.load_seccomp_bpf(plan.seccomp_bpf)
    if ready.environment != home:
        _job_environment(home)


def _job_environment(home: str) -> None:
    """Nothing inherited but the zygote's thread-pool knobs (constants, never secrets)."""
    knobs = {name: value for name, value in os.environ.items() if name.endswith("_NUM_THREADS")}
    os.environ.clear()
    os.environ.update(knobs, HOME=home, TMPDIR=home, LC_CTYPE="C.UTF-8")


def _set_rlimits(limits: dict[str, int], plan: Plan, baseline: int) -> None:
    # The zygote's own mappings (interpreter, pre-imported libraries) are shared, already
    # paid for, and count towards RLIMIT_AS: the job's budget comes on top of them.
    nproc = limits["nproc"]
    if plan.uid_base is None and not plan.userns:
        # Shared uid and no user namespace: RLIMIT_NPROC counts every task of the uid
        # (the worker's included), so the budget sits on top of what exists now.
        nproc += _tasks_of_uid(os.getuid())
    for which, soft, hard in (
        (resource.RLIMIT_AS, baseline + limits["memory"], baseline + limits["memory"]),
        # soft CPU limit raises SIGXCPU (reported as cpu_limit); hard one is a SIGKILL
        # for code that catches SIGXCPU.
        (resource.RLIMIT_CPU, limits["cpu"], limits["cpu"] + 1),
        (resource.RLIMIT_FSIZE, limits["fsize"], limits["fsize"]),
        (resource.RLIMIT_NOFILE, limits["nofile"], limits["nofile"]),
        (resource.RLIMIT_NPROC, nproc, nproc),
        (resource.RLIMIT_CORE, 0, 0),
    ):
        resource.setrlimit(which, (soft, hard))


def _tasks_of_uid(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                continue
    return count


def _report_setup_failure(exc: BaseException, chan_fd: int) -> None:
    text = f"{type(exc).__name__}: {exc}"[:2000]
    with contextlib.suppress(OSError):
        _tell(chan_fd, {"op": "setup_failed", "error": text})
    with contextlib.suppress(OSError):
        os.write(2, f"{SETUP_FAILED_MARKER} {text}\n".encode())


def _execute(main: types.ModuleType) -> int:
    """Run main.py as ``__main__`` with ``inputs`` bound, like ``python main.py`` would."""
    sys.argv = ["main.py"]
    sys.modules["__main__"] = main
    status = 0
    try:
        # Bytes, as ``python main.py`` reads its file: a coding declaration is honoured.
        with open("inputs.json", "rb") as fh:
            main.__dict__.update(inputs=_decode_inputs(fh.read()), __file__="main.py",
                                 __builtins__=builtins)
        with open("main.py", "rb") as fh:
            source = fh.read()
        exec(compile(source, "main.py", "exec"), main.__dict__)
    except SystemExit as exc:
        status = _exit_status(exc)
    except BaseException as exc:  # report like the interpreter would
        # As the interpreter prints an uncaught exception (traceback would be one more
        # module in every job's address space), without our own frame.
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        sys.__excepthook__(type(exc), exc.with_traceback(tb), tb)
        status = 1
    # Like the interpreter's shutdown: wait for the job's non-daemon threads. The zygote never
    # imports threading (its at-fork hook would cost every job ~0.3 ms): only a job that
    # imported it can have such threads.
    threading = sys.modules.get("threading")
    if threading is not None:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    return status


#: json's C scanner, made once in the zygote (see _decode_inputs).
_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__


def _decode_inputs(data: bytes) -> object:
    """inputs.json as the supervisor writes it (json.dumps: ASCII, nothing around the
    value) goes straight to json's scanner: the Python layer of json.loads (encoding
    detection, two regex matches) copies ~25 pages in every job process, on its result's
    path. Anything else gets json.loads's own answer."""
    try:
        text = data.decode("utf-8")
        value, end = _scan_json(text, 0)
        if end == len(text):
            return value
    except (UnicodeDecodeError, StopIteration, ValueError):
        pass
    return json.loads(data)


def _exit_status(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1
