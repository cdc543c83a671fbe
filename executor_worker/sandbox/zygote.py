"""ZygoteSandbox: the supervisor side of the pre-forked, layered sandbox.

Runs in the worker's event loop. It starts the zygote (``python -I``, empty environment)
over an unnamed SOCK_SEQPACKET socketpair, checks the layers the zygote found against
``SANDBOX_LEVEL``, and per job: writes the job directory, hands the zygote the write ends of
two pipes it owns, enforces the wall-clock timeout (the zygote kills the job's process
group), caps output, classifies the ending and collects artifacts. The supervisor holds the
secrets: no job process is its child, inherits its environment or memory, or holds a
descriptor that leads back to it.

The result is returned as soon as the zygote reports the job ``exited``; the job's teardown
(its namespaces, then its directory) runs afterwards, off the result path. A slot (and so
its uid) is given to another job only once the zygote reports the job ``reaped`` and its
directory is gone (or, where a slot keeps one for all its jobs, emptied), so there are
twice as many slots as concurrent jobs: one job can run in a slot while the previous
occupant of another is still being torn down.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import socket
import stat
import time
import uuid
from pathlib import Path

import structlog

from executor_worker.sandbox import levels, protocol
from executor_worker.sandbox.api import (
    SandboxJob,
    SandboxOutcome,
    SandboxRefused,
    SandboxUnavailable,
)
from executor_worker.sandbox.jobdir import (
    empty_job_dir,
    instance_dir_name,
    make_job_dir,
    open_slot_dir,
    remove_job_dir,
    remove_plain_job_dir,
    slot_dir,
    sweep_dead_instances,
)
from executor_worker.sandbox.jobfiles import collect_artifacts, write_job_files
from executor_worker.sandbox.output import CappedBuffer
from executor_worker.sandbox.pipes import PipeReader
from executor_worker.sandbox.python_binary import real_python
from executor_worker.sandbox.settings import SandboxSettings
from executor_worker.sandbox.verdict import Verdict, classify

log = structlog.get_logger(__name__)

#: Imports zygote_main without running the project's package __init__ files (they pull in
#: pydantic and the schemas): stub packages whose __path__ points at the source folders.
_LAUNCHER = (
    "import sys, types\n"
    "d = sys.argv[3]\n"
    "for n, p in (('executor_worker', d.rsplit('/', 1)[0]), ('executor_worker.sandbox', d)):\n"
    "    m = types.ModuleType(n); m.__path__ = [p]; sys.modules[n] = m\n"
    "from executor_worker.sandbox import zygote_main\n"
    "zygote_main.main(sys.argv)\n"
)
_SANDBOX_DIR = os.path.dirname(os.path.realpath(__file__))
_SUPERVISOR_LAYERS = ("timeout", "output-cap")
_EXIT_GRACE_S = 5.0
_DRAIN_GRACE_S = 2.0


#: interpreter path -> the module search path its ``site`` sets up (see _module_path)
_MODULE_PATHS: dict[str, list[str]] = {}


async def _module_path(python: str) -> list[str]:
    """The module search path ``python -I`` would have, learnt once per interpreter.

    The zygote runs with ``-S``: ``site`` would execute the ``import`` lines of every
    ``.pth`` file in site-packages (editable-install finders, setuptools' shim, a host's
    certificate hook), which pull ``threading`` and ``random`` into the zygote, and their
    at-fork hooks then run in every job (~0.4 ms and ~170 page copies each on this VM).
    The path those files add is kept; their code runs here, in a throwaway interpreter,
    as it does in any start of this worker's environment.
    """
    known = _MODULE_PATHS.get(python)
    if known is not None:
        return known
    try:
        proc = await asyncio.create_subprocess_exec(
            python, "-I", "-c", "import json, sys; print(json.dumps(sys.path))",
            env={}, cwd="/", stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
    except OSError as exc:
        raise SandboxRefused(f"cannot start the interpreter ({python}): {exc}") from exc
    if proc.returncode != 0:
        raise SandboxRefused(f"the interpreter {python} failed to start: "
                             f"{err.decode(errors='replace').strip()[-500:]}")
    path = [str(p) for p in json.loads(out) if isinstance(p, str) and p]
    _MODULE_PATHS[python] = path
    return path


class ZygoteSandbox:
    def __init__(self, settings: SandboxSettings, *, python: str | None = None,
                 _fake_cgroupfs: tuple[str, str] | None = None) -> None:
        """``_fake_cgroupfs``: for tests only, (mount, file standing in for
        /proc/self/cgroup) of a fake cgroupfs tree the zygote then takes for the host's
        (cgroup.py emulates the kernel there). Deliberately no setting: a directory that
        is not cgroupfs enforces nothing, yet would report the ``cgroup`` layer."""
        self._settings = settings
        self._python = python or real_python()
        self._fake_cgroupfs = _fake_cgroupfs
        self._work_dir = Path(os.path.abspath(settings.work_dir))
        # A directory of this instance's own: several workers (or tests) may share work_dir,
        # and a worker that died mid-job leaves directories that only it may sweep.
        self._instance = instance_dir_name(os.getpid())
        self._root = self._work_dir / self._instance
        self._layers: tuple[str, ...] = ()
        self._notes: dict[str, str] = {}
        self._uid_base: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._ctrl: socket.socket | None = None
        #: job key -> (wait status, setup error, ended by its "done" byte): the error comes
        #: only from the zygote.
        self._waiting: dict[str, asyncio.Future[tuple[int, str | None, bool]]] = {}
        #: job key -> resolved when the zygote reports the job's last process gone
        self._reaped: dict[str, asyncio.Future[None]] = {}
        #: Slots (uids) not held by a running job or one still being torn down.
        self._free_slots: asyncio.Queue[int] = asyncio.Queue()
        for slot in range(2 * settings.concurrency):
            self._free_slots.put_nowait(slot)
        #: Where the zygote arms its slots' children ahead (its hello says so: root hosts
        #: with the uid layer, no job cgroups), each slot keeps one directory for all its
        #: jobs, kept empty between them: slot -> it. The slot's namespaces bind it over /tmp
        #: once, and each of its job processes is confined to it before its job exists
        #: (zygote_child.serve_one): no directory made, bound, allowed, unbound and removed
        #: per job (~0.5 ms of CPU).
        self._arms = False
        self._slot_dirs: dict[int, Path] = {}
        self._running = asyncio.Semaphore(settings.concurrency)
        self._teardowns: set[asyncio.Task[None]] = set()
        self._trace_of: dict[str, dict[str, int]] = {}
        self._start_lock = asyncio.Lock()
        #: Per-job spans in ns (SANDBOX_TRACE): what bench/sandbox.py --trace prints.
        self.traces: collections.deque[dict[str, int]] = collections.deque(maxlen=100_000)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._start_lock:
            if self.ready():
                return
            await self._kill_zygote()  # a lost one: reap it before starting anew
            self._prepare_root()
            hello = await self._launch()
            layers = tuple(hello["layers"]) + _SUPERVISOR_LAYERS
            self._notes = dict(hello["notes"])
            try:
                gaps = levels.check(self._settings.level, layers,
                                    self._settings.allow_degraded, self._notes)
            except SandboxRefused:
                await self.close()
                raise
            self._layers = layers
            self._uid_base = self._settings.uid_base if "uid" in layers else None
            self._arms = (hello.get("arms") is True and self._uid_base is not None
                          and bool(self._slot_dirs))
            try:
                self._open_slot_dirs()
            except OSError as exc:
                await self.close()
                raise SandboxRefused(f"cannot prepare the slots' directories: {exc}") from exc
            log.info("sandbox.started", kind="zygote", layers=list(layers),
                     level=self._settings.level, unmet=gaps, notes=self._notes,
                     preimport_failures=hello.get("preimport_failures"))
            if gaps:
                log.warning("sandbox.degraded", level=self._settings.level, missing=gaps)

    def ready(self) -> bool:
        return self._ctrl is not None and self._proc is not None and self._proc.returncode is None

    def layers(self) -> tuple[str, ...]:
        return self._layers

    def notes(self) -> dict[str, str]:
        """Why each missing layer is missing (for health endpoints and logs)."""
        return dict(self._notes)

    async def close(self) -> None:
        ctrl, proc = self._ctrl, self._proc
        self._ctrl = self._proc = None
        if ctrl is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(ctrl.fileno())
            ctrl.close()  # the zygote sees EOF, exits; its children follow (death signal)
        if proc is not None:
            try:
                await asyncio.wait_for(proc.wait(), timeout=5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self._fail_waiting()
        await self.settle()
        if not self._waiting:
            remove_job_dir(self._root)

    async def settle(self) -> None:
        """Wait until every finished job is torn down (its directory removed, its slot free)."""
        while self._teardowns:
            await asyncio.gather(*self._teardowns, return_exceptions=True)

    @property
    def zygote_pid(self) -> int | None:
        """The zygote's pid in our PID namespace (jobs in a PID namespace cannot see it)."""
        return None if self._proc is None else self._proc.pid

    @property
    def job_root(self) -> Path:
        """Where this instance's job directories live (one per running job)."""
        return self._root

    def _prepare_root(self) -> None:
        try:
            self._work_dir.mkdir(parents=True, exist_ok=True)
            st = os.lstat(self._work_dir)
            # In a shared /tmp someone else could have created it first, or planted a
            # symlink to a directory we would then chmod and fill.
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                raise SandboxRefused(
                    f"SANDBOX_WORK_DIR {self._work_dir} is not a directory (symlinks refused) "
                    f"owned by uid {os.geteuid()}"
                )
            # Landlock rules and the zygote's checks want the canonical path.
            self._root = Path(os.path.realpath(self._work_dir)) / self._instance
            # 0711: job uids may traverse to their own directory but not list the others.
            os.chmod(self._work_dir, 0o711 if os.geteuid() == 0 else 0o700)
            sweep_dead_instances(self._work_dir)
            self._root.mkdir(exist_ok=True)
            os.chmod(self._root, 0o711 if os.geteuid() == 0 else 0o700)
            if os.geteuid() == 0:
                # Before the zygote starts: its slots bind them as they are made (root
                # only: per-slot uids need root). Kept or given up by _open_slot_dirs.
                for slot in range(2 * self._settings.concurrency):
                    self._slot_dirs[slot] = slot_dir(self._root, slot)
        except OSError as exc:
            raise SandboxRefused(f"cannot prepare SANDBOX_WORK_DIR: {exc}") from exc

    async def _launch(self) -> protocol.Message:
        mine, theirs = protocol.socketpair()
        s = self._settings
        config = {
            "prefork": s.prefork_count, "preimport": list(s.preimport_modules),
            "disabled": sorted(s.disabled_layers), "allow_exec": s.allow_exec,
            "uid_base": s.uid_base, "work_root": str(self._root),
            "extra_read_paths": list(s.extra_read_paths), "nproc": s.nproc,
            "tmp_bytes": s.tmp_mb * 1024 * 1024,
            "supervisor_pid": os.getpid(), "trace": s.trace,
            "slots": 2 * s.concurrency,
            "slot_dirs": [str(self._slot_dirs[slot]) for slot in sorted(self._slot_dirs)],
            "cgroup_fs": list(self._fake_cgroupfs) if self._fake_cgroupfs else None,
        }
        try:
            config["sys_path"] = await _module_path(self._python)
            self._proc = await asyncio.create_subprocess_exec(
                self._python, "-I", "-S", "-c", _LAUNCHER, json.dumps(config),
                str(theirs.fileno()), _SANDBOX_DIR,
                env={},  # the zygote and every job start with nothing of the worker's
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),), cwd="/",
            )
        except OSError as exc:
            raise SandboxRefused(f"cannot start the zygote ({self._python}): {exc}") from exc
        finally:
            theirs.close()
        mine.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            data = await asyncio.wait_for(loop.sock_recv(mine, protocol.MAX_MESSAGE),
                                          timeout=s.start_timeout_s)
        except TimeoutError:
            mine.close()
            await self._kill_zygote()
            raise SandboxRefused("zygote did not report its layers in time") from None
        if not data:
            mine.close()
            await self._kill_zygote()
            raise SandboxRefused("zygote exited during start-up (see worker stderr)")
        hello: protocol.Message = json.loads(data)
        self._ctrl = mine
        loop.add_reader(mine.fileno(), self._on_ctrl)
        return hello

    async def _kill_zygote(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()
            self._proc = None

    # -- control channel ------------------------------------------------------------------

    def _on_ctrl(self) -> None:
        assert self._ctrl is not None
        while True:
            try:
                message, _ = protocol.recv(self._ctrl)
            except BlockingIOError:
                return
            except OSError:
                message = None
            if message is None:
                self._zygote_lost("control channel closed")
                return
            op = message.get("op")
            if op == "exited":
                fut = self._waiting.get(message["id"])
                if fut is not None and not fut.done():
                    error = message.get("setup_error")
                    # The zygote reports ends other than a "done" byte (the supervisor
                    # reads that one itself: see _supervise_io).
                    fut.set_result((int(message["status"]),
                                    None if error is None else str(error), False))
                self._note_trace(message)  # after a "done" byte too: the child's times
            elif op == "reaped":
                reaped = self._reaped.pop(message["id"], None)
                if reaped is not None and not reaped.done():
                    reaped.set_result(None)
                    self._note_trace(message)

    def _note_trace(self, message: protocol.Message) -> None:
        trace = self._trace_of.get(message["id"])
        if trace is not None:
            for key, value in message.items():
                if key.startswith("t_"):
                    trace.setdefault(key, int(value))

    def _zygote_lost(self, why: str) -> None:
        """Forget a dead zygote; the next run() starts a new one."""
        if self._ctrl is None:
            return
        log.error("sandbox.zygote_lost", reason=why)
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(self._ctrl.fileno())
        self._ctrl.close()
        self._ctrl = None
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        self._fail_waiting()

    def _fail_waiting(self) -> None:
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(SandboxUnavailable("the zygote exited"))
        # Its children die with it (parent-death signals): nothing of theirs is left.
        for reaped in self._reaped.values():
            if not reaped.done():
                reaped.set_result(None)
        self._reaped.clear()

    def slot_dirs(self) -> set[Path]:
        """The slots' own directories (see _slot_dirs), empty but while a job runs there."""
        return set(self._slot_dirs.values()) if self._arms else set()

    def _open_slot_dirs(self) -> None:
        """The zygote arms its children: each slot's group gets its directory. Else they
        are of no use: gone."""
        if self._arms:
            assert self._uid_base is not None
            for slot, path in self._slot_dirs.items():
                open_slot_dir(path, self._uid_base + slot)
            return
        for path in self._slot_dirs.values():
            remove_job_dir(path)
        self._slot_dirs.clear()

    def _send(self, message: protocol.Message, fds: tuple[int, ...] = ()) -> None:
        if self._ctrl is None:
            raise SandboxUnavailable("the zygote is not running")
        # Messages are tiny and the zygote drains its socket at once; a full buffer means a
        # wedged zygote, which is a broken sandbox.
        self._ctrl.setblocking(True)
        self._ctrl.settimeout(5.0)
        try:
            protocol.send(self._ctrl, message, fds)
        except OSError as exc:
            self._zygote_lost(f"send failed: {exc}")
            raise SandboxUnavailable(f"cannot reach the zygote: {exc}") from exc
        if self._ctrl is not None:
            self._ctrl.setblocking(False)

    # -- jobs -----------------------------------------------------------------------------

    async def run(self, job: SandboxJob) -> SandboxOutcome:
        if not self.ready():
            # The zygote died: start a new one. It started with this configuration before,
            # so a refusal now is the host's passing state, not a configuration error.
            try:
                await self.start()
            except SandboxRefused as exc:
                raise SandboxUnavailable(f"cannot restart the zygote: {exc}") from exc
        async with self._running:
            slot = await self._free_slots.get()
            trace: dict[str, int] | None = None
            if self._settings.trace:
                trace = {"t_start": time.monotonic_ns()}
            owner = None if self._uid_base is None else self._uid_base + slot
            key = uuid.uuid4().hex
            job_dir: Path | None = None
            try:
                if self._arms:
                    job_dir = self._slot_dirs[slot]  # emptied for it: see _teardown
                    write_job_files(job_dir, job, rewrite=True)
                else:
                    job_dir = make_job_dir(self._root, job, owner)
                if trace is not None:
                    trace["t_dir"] = time.monotonic_ns()
                    self._trace_of[key] = trace
                return await self._supervise(job, job_dir, slot, key)
            finally:
                self._waiting.pop(key, None)
                self._teardown(key, job_dir, slot, trace)

    def _teardown(self, key: str, job_dir: Path | None, slot: int,
                  trace: dict[str, int] | None) -> None:
        """Off the result path: once the job's processes are gone, remove its directory and
        free its slot."""
        reaped = self._reaped.get(key)

        async def finish() -> None:
            freed = True
            try:
                if reaped is not None:
                    await reaped
                if trace is not None:
                    trace["t_reap_seen"] = time.monotonic_ns()
                if job_dir is not None and job_dir == self._slot_dirs.get(slot):
                    # Also after a zygote restart: the slot's directory is the same one.
                    freed = await self._empty_slot_dir(slot, job_dir)
                elif job_dir is not None and not remove_plain_job_dir(job_dir):
                    # Whatever the job left (depth, modes, many files): in a thread, so the
                    # loop keeps serving other jobs' results meanwhile.
                    await asyncio.get_running_loop().run_in_executor(None, remove_job_dir,
                                                                     job_dir)
                if trace is not None:
                    trace["t_removed"] = time.monotonic_ns()
                    self.traces.append(trace)
            finally:
                self._reaped.pop(key, None)
                self._trace_of.pop(key, None)
                if freed:
                    self._free_slots.put_nowait(slot)

        task = asyncio.get_running_loop().create_task(finish())
        self._teardowns.add(task)
        task.add_done_callback(self._teardowns.discard)

    async def _empty_slot_dir(self, slot: int, path: Path) -> bool:
        """Empty a slot's directory for its next job (every process of the last one is
        gone). True if the slot is free again. A directory that cannot be emptied never
        meets another job: it is quarantined, a new one takes its place, and the zygote is
        restarted so that the slot's namespaces bind the new one."""
        if remove_plain_job_dir(path, keep=True):
            return True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, empty_job_dir, path)
            return True
        except OSError as exc:
            log.error("sandbox.slot_dir_not_emptied", slot=slot, path=str(path), error=str(exc))
        await loop.run_in_executor(None, remove_job_dir, path)  # quarantines what it cannot
        try:
            self._slot_dirs[slot] = slot_dir(self._root, slot)
            if self._uid_base is not None:
                open_slot_dir(self._slot_dirs[slot], self._uid_base + slot)
        except OSError as exc:
            log.error("sandbox.slot_dir_lost", slot=slot, error=str(exc))
            return False  # the slot stays taken: its jobs would have nowhere to go
        self._zygote_lost(f"slot {slot}'s directory could not be emptied")
        return True

    async def _supervise(self, job: SandboxJob, job_dir: Path, slot: int,
                         key: str) -> SandboxOutcome:
        out, err = CappedBuffer(job.max_output_bytes), CappedBuffer(job.max_output_bytes)
        readers: list[PipeReader] = []
        try:
            return await self._supervise_io(job, job_dir, slot, key, out, err, readers)
        finally:
            for reader in readers:
                reader.close()

    async def _supervise_io(self, job: SandboxJob, job_dir: Path, slot: int, key: str,
                            out: CappedBuffer, err: CappedBuffer,
                            readers: list[PipeReader]) -> SandboxOutcome:
        loop = asyncio.get_running_loop()
        hard_cap = job.max_output_bytes * self._settings.output_kill_factor
        flooded: list[str] = []

        def check_flood() -> None:
            for name, buf in (("stdout", out), ("stderr", err)):
                if buf.total > hard_cap and not flooded:
                    flooded.append(name)
                    with contextlib.suppress(SandboxUnavailable):
                        self._send({"op": "kill", "id": key})

        (out_r, out_w), (err_r, err_w) = os.pipe2(os.O_CLOEXEC), os.pipe2(os.O_CLOEXEC)
        readers += [PipeReader(loop, out_r, out, check_flood),
                    PipeReader(loop, err_r, err, check_flood)]
        fut: asyncio.Future[tuple[int, str | None, bool]] = loop.create_future()
        self._waiting[key] = fut
        done_r, done_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)

        def on_done() -> None:
            """The job's code returned: one byte, its exit code, written by the child after
            the job's code and its output's flush. The job can reach the pipe too: a byte
            read here can only end the job early with an exit code of its choosing, which
            it could have done by exiting. Anything else (EOF, more bytes): wait for the
            zygote's report of the job's end."""
            try:
                data = os.read(done_r, 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            loop.remove_reader(done_r)
            if len(data) != 1 or fut.done():
                return
            if trace is not None:
                trace["t_exited"] = time.monotonic_ns()
            fut.set_result((data[0] << 8, None, True))
            # Nothing of the job may outlive its result: killed right after the result is
            # taken (a send now would hand the CPU to the zygote before the result).
            loop.call_soon(kill, True)

        def kill(done: bool = False) -> None:
            # done: we have the job's result, the zygote need not report its end.
            with contextlib.suppress(SandboxUnavailable):
                self._send({"op": "kill", "id": key, "done": done})

        trace = self._trace_of.get(key)
        loop.add_reader(done_r, on_done)
        self._reaped[key] = loop.create_future()
        limits = {
            "memory": job.memory_mb * 1024 * 1024,
            "cpu": job.cpu_s or int(job.timeout_s) + 1,
            "fsize": job.max_file_bytes,
            "nofile": self._settings.nofile,
            "nproc": self._settings.nproc,
            "cpu_quota": self._settings.cpu_quota,  # cores (cgroup cpu.max)
        }
        start = time.monotonic()
        try:
            self._send({"op": "run", "id": key, "dir": str(job_dir), "slot": slot,
                        "limits": limits}, (out_w, err_w, done_w))
        except SandboxUnavailable:
            self._reaped.pop(key, None)  # never reached the zygote: nothing to wait for
            loop.remove_reader(done_r)
            os.close(done_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
            os.close(done_w)
        if trace is not None:
            trace["t_sent"] = time.monotonic_ns()
        # Plain timers rather than wait_for: this path runs hundreds of times a second.
        timers: list[asyncio.TimerHandle] = []

        def give_up() -> None:
            if not fut.done():
                fut.set_exception(SandboxUnavailable("the zygote did not report a killed job"))

        def on_timeout() -> None:
            timers.append(loop.call_later(_EXIT_GRACE_S, give_up))
            with contextlib.suppress(SandboxUnavailable):
                self._send({"op": "kill", "id": key})

        timers.append(loop.call_later(job.timeout_s, on_timeout))
        try:
            status, setup_error, done = await fut
        finally:
            for timer in timers:
                timer.cancel()
            loop.remove_reader(done_r)
            os.close(done_r)
        timed_out = len(timers) > 1
        duration_ms = (time.monotonic() - start) * 1000
        trace = self._trace_of.get(key)
        if trace is not None:
            trace["t_exit_seen"] = time.monotonic_ns()
        if done:
            # The job flushed its output before its "done" byte, so the pipes hold all of
            # it now; what it left running is being killed and may not add to its result.
            for reader in readers:
                reader.drain_now()
        pending = [r.done for r in readers if not r.done.done()]
        if pending:
            # The job has ended and what it left running is being killed: EOF follows
            # unless something escaped it.
            await asyncio.wait(pending, timeout=_DRAIN_GRACE_S)
        if trace is not None:
            trace["t_drained"] = time.monotonic_ns()
        if setup_error is not None:
            # Reported by the zygote from the child's channel, which the child closes before
            # the job's code runs: nothing the job prints or exits with can get here.
            raise SandboxUnavailable(f"sandbox setup failed: {setup_error}")
        returncode = os.waitstatus_to_exitcode(status)
        stderr = err.text()
        verdict = classify(returncode, timed_out, stderr, job)
        if flooded and not timed_out:
            verdict = Verdict("failed", None, verdict.signal, "output_limit",
                              f"output limit exceeded: more than {hard_cap} bytes on "
                              f"{flooded[0]}")
        outcome = SandboxOutcome(
            status=verdict.status, exit_code=verdict.exit_code, signal=verdict.signal,
            reason_code=verdict.reason_code, reason=verdict.reason,
            stdout=out.text(), stderr=stderr,
            stdout_truncated=out.truncated, stderr_truncated=err.truncated,
            duration_ms=duration_ms, artifacts=collect_artifacts(job_dir, job),
            layers=self._layers,
        )
        if trace is not None:
            trace["t_outcome"] = time.monotonic_ns()
        return outcome
