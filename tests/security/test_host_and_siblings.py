"""Issue 9: what a job could still do to the host and to its siblings while Landlock,
seccomp and rlimits held — metadata of files the worker owns, other processes' limits,
shared IPC, path sockets, inotify, process totals. Every assertion checks the real effect
on the host (modes, limits, queues), not only the job's own report."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import socket
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.conftest import SET_COMM, Harness, processes_named

pytestmark = pytest.mark.security


def _exists(path: str) -> bool:
    return os.path.exists(path)

TRY = (
    "def attempt(label, fn):\n"
    "    try:\n"
    "        result = fn()\n"
    "        print(label, 'ALLOWED', repr(result)[:200], flush=True)\n"
    "    except BaseException as exc:\n"
    "        print(label, 'DENIED', type(exc).__name__, exc, flush=True)\n"
    "import ctypes\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "def check(rc):\n"
    "    if rc == -1:\n"
    "        raise OSError(ctypes.get_errno(), 'failed')\n"
    "    return rc\n"
)


def denied(stdout: str, *labels: str) -> None:
    for label in labels:
        assert f"{label} DENIED" in stdout, f"{label} was not denied:\n{stdout}"


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A host directory any uid may traverse, holding files the worker owns."""
    path = Path(tempfile.mkdtemp(prefix="llmexec-host-"))
    os.chmod(path, 0o755)
    yield path
    for entry in path.iterdir():
        entry.unlink()
    path.rmdir()


async def test_metadata_of_worker_owned_files_cannot_change(harness: Harness) -> None:
    # A worker-owned file the job can name: beside the job directories (a private /tmp
    # would hide anything else under /tmp). In a non-root pod, site-packages is the same.
    target = harness.work_dir / "worker-owned"
    target.write_text("x")
    os.chmod(target, 0o644)
    os.utime(target, (1_000_000, 1_000_000))
    before = os.stat(target)
    instance_mode = stat.S_IMODE(os.stat(harness.work_dir).st_mode)
    code = TRY + (
        "import os\n"
        "t, inst = inputs['target'], inputs['instance']\n"
        "attempt('chmod-setuid', lambda: os.chmod(t, 0o4777))\n"
        "try:\n"
        "    fd = os.open(t, os.O_RDONLY)\n"  # unreachable where /tmp is the job's own
        "except OSError:\n"
        "    fd = os.open('main.py', os.O_RDONLY)\n"  # the worker's, in every mode
        "attempt('fchmod', lambda: os.fchmod(fd, 0o4777))\n"
        "attempt('chown', lambda: os.chown(t, 12345, 12345))\n"
        "attempt('fchown', lambda: os.fchown(fd, 12345, 12345))\n"
        "attempt('utime', lambda: os.utime(t, (0, 0)))\n"
        "attempt('futime', lambda: os.utime(fd, (0, 0)))\n"
        "attempt('setxattr', lambda: os.setxattr(t, 'user.pwned', b'1'))\n"
        "attempt('fsetxattr', lambda: os.setxattr(fd, 'user.pwned', b'1'))\n"
        "attempt('chmod-instance', lambda: os.chmod(inst, 0))\n"
        "attempt('chmod-parent', lambda: os.chmod('..', 0))\n"
    )
    outcome = await harness.run(code, inputs={"target": str(target),
                                              "instance": str(harness.work_dir)})
    assert outcome.status == "succeeded", outcome
    after = os.stat(target)
    assert (after.st_mode, after.st_uid, after.st_gid) == (
        before.st_mode, before.st_uid, before.st_gid), outcome.stdout
    assert after.st_mtime_ns == before.st_mtime_ns, outcome.stdout
    with pytest.raises(OSError):
        os.getxattr(target, "user.pwned")
    assert stat.S_IMODE(os.stat(harness.work_dir).st_mode) == instance_mode
    target.unlink()
    # The next job is not broken by anything the previous one tried.
    assert (await harness.run("print('ok')")).stdout == "ok\n"


def _limits(pid: int) -> list[str]:
    # /proc/<pid>/limits is world-readable; prlimit() would need the target's uid.
    with open(f"/proc/{pid}/limits") as fh:
        return [line for line in fh if line.startswith(("Max cpu", "Max open", "Max address"))]


async def test_limits_and_priority_of_other_processes_cannot_change(harness: Harness) -> None:
    assert harness.sandbox._proc is not None
    zygote = harness.sandbox._proc.pid
    me = os.getpid()
    before = {pid: _limits(pid) for pid in (me, zygote)}
    nice_before = {pid: os.getpriority(os.PRIO_PROCESS, pid) for pid in (me, zygote)}
    code = TRY + (
        "import os, resource\n"
        "for name, pid in (('sup', inputs['sup']), ('zyg', inputs['zyg'])):\n"
        "    attempt(name + '-cpu', lambda: resource.prlimit(pid, resource.RLIMIT_CPU, (1, 1)))\n"
        "    attempt(name + '-nofile', lambda: resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, 3)))\n"
        "    attempt(name + '-nice', lambda: os.setpriority(os.PRIO_PROCESS, pid, 19))\n"
        "    attempt(name + '-affinity', lambda: os.sched_setaffinity(pid, {0}))\n"
        "attempt('nice-user', lambda: os.setpriority(os.PRIO_USER, 0, 19))\n"
        "attempt('nice-pgrp-0', lambda: os.setpriority(os.PRIO_PGRP, 0, 19))\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))\n"  # its own: allowed
        "print('own', resource.getrlimit(resource.RLIMIT_NOFILE))\n"
    )
    outcome = await harness.run(code, inputs={"sup": me, "zyg": zygote})
    assert outcome.status == "succeeded", outcome
    assert "own (32, 32)" in outcome.stdout
    assert {pid: _limits(pid) for pid in (me, zygote)} == before, outcome.stdout
    assert {pid: os.getpriority(os.PRIO_PROCESS, pid) for pid in (me, zygote)} == nice_before
    assert os.sched_getaffinity(me) == os.sched_getaffinity(0)
    denied(outcome.stdout, "sup-cpu", "sup-nofile", "zyg-cpu", "zyg-nofile", "nice-user")
    assert harness.sandbox.ready()


async def test_a_sibling_job_is_invisible_or_at_least_untouchable(harness: Harness) -> None:
    comm = f"victim-{uuid.uuid4().hex[:6]}"
    victim = asyncio.create_task(harness.run(
        SET_COMM + f"import time\nset_comm({comm!r})\ntime.sleep(2)\nprint('victim done')\n"))
    pids: list[int] = []
    for _ in range(200):
        pids = processes_named(comm)
        if pids:
            break
        await asyncio.sleep(0.01)
    assert pids
    victim_pid = pids[0]
    before = _limits(victim_pid)
    code = TRY + (
        "import os, resource, signal\n"
        "v = inputs['victim']\n"
        "attempt('probe', lambda: os.kill(v, 0))\n"
        "attempt('prlimit', lambda: resource.prlimit(v, resource.RLIMIT_CPU, (1, 1)))\n"
        "attempt('kill', lambda: os.kill(v, signal.SIGKILL))\n"
        "print('mypid', os.getpid())\n"
        "try:\n"
        "    print('proc', sorted(int(p) for p in os.listdir('/proc') if p.isdigit()))\n"
        "except OSError as exc:\n"
        "    print('proc-unreadable', exc)\n"
    )
    attacker = await harness.run(code, inputs={"victim": victim_pid})
    assert _limits(victim_pid) == before, attacker.stdout
    outcome = await victim
    assert outcome.stdout == "victim done\n", (outcome, attacker.stdout)
    denied(attacker.stdout, "probe", "prlimit", "kill")
    if "pidns" in harness.sandbox.layers():
        assert "probe DENIED ProcessLookupError" in attacker.stdout, attacker.stdout
        # Its own /proc: the job's init and the job, nothing of the host's.
        listed = attacker.stdout.split("proc ")[1].splitlines()[0]
        assert max(eval(listed)) < 10, attacker.stdout
        assert victim_pid not in eval(listed) or victim_pid < 10


_libc = ctypes.CDLL(None, use_errno=True)
IPC_CREAT, IPC_RMID = 0o1000, 0


async def test_sysv_ipc_of_the_host_and_of_other_jobs_is_out_of_reach(harness: Harness) -> None:
    key = 0x4C4C0000 | (os.getpid() & 0xFFFF)
    shm = _libc.shmget(key, 4096, IPC_CREAT | 0o666)
    msq = _libc.msgget(key, IPC_CREAT | 0o666)
    assert shm >= 0 and msq >= 0
    try:
        code = TRY + (
            "k = inputs['key']\n"
            "attempt('host-shm', lambda: check(libc.shmget(k, 0, 0)))\n"
            "attempt('host-msq', lambda: check(libc.msgget(k, 0)))\n"
            "attempt('new-shm', lambda: check(libc.shmget(k + 1, 4096, 0o1000 | 0o666)))\n"
            "attempt('new-msq', lambda: check(libc.msgget(k + 1, 0o1000 | 0o666)))\n"
            "attempt('mq_open', lambda: check(libc.mq_open(b'/llmexec-mq', 0o100 | 2, 0o666, None)))\n"
        )
        outcome = await harness.run(code, inputs={"key": key})
        later = await harness.run(code, inputs={"key": key})
    finally:
        _libc.shmctl(shm, IPC_RMID, None)
        _libc.msgctl(msq, IPC_RMID, None)
    denied(outcome.stdout, "host-shm", "host-msq")
    denied(later.stdout, "host-shm", "host-msq")
    # Nothing a job created outlives it on the host.
    assert _libc.shmget(key + 1, 0, 0) == -1 and _libc.msgget(key + 1, 0) == -1
    # The host's queues, by name (no /dev/mqueue is mounted on most hosts: look it up).
    assert _libc.mq_open(b"/llmexec-mq", os.O_RDONLY, 0, None) == -1
    assert ctypes.get_errno() == errno.ENOENT
    if "ipcns" not in harness.sandbox.layers():
        denied(outcome.stdout, "new-shm", "new-msq", "mq_open")


async def test_unix_datagrams_to_a_host_path_socket_never_arrive(harness: Harness,
                                                                 host_dir: Path) -> None:
    os.chmod(host_dir, 0o777)
    path = host_dir / "host.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    os.chmod(path, 0o777)
    listener.setblocking(False)
    try:
        code = TRY + (
            "import socket\n"
            "p = inputs['path']\n"
            "def via(kind):\n"
            "    a, b = socket.socketpair(socket.AF_UNIX, kind)\n"
            "    return a.sendto(b'hello', p)\n"
            "attempt('dgram', lambda: via(socket.SOCK_DGRAM))\n"
            "attempt('seqpacket', lambda: via(socket.SOCK_SEQPACKET))\n"
            "attempt('stream', lambda: via(socket.SOCK_STREAM))\n"
            "a, b = socket.socketpair()\n"  # what asyncio and multiprocessing need
            "a.send(b'ping'); print('pair', b.recv(4))\n"
        )
        outcome = await harness.run(code, inputs={"path": str(path)})
        with pytest.raises(BlockingIOError):
            listener.recv(100)
    finally:
        listener.close()
        path.unlink()
    assert outcome.status == "succeeded", outcome
    assert "pair b'ping'" in outcome.stdout
    denied(outcome.stdout, "dgram", "seqpacket")


async def test_inotify_and_fanotify_are_refused(harness: Harness) -> None:
    code = TRY + (
        "fd = libc.inotify_init1(0)\n"
        "attempt('inotify_init', lambda: check(fd))\n"
        "attempt('watch', lambda: check(libc.inotify_add_watch(fd, inputs['dir'].encode(), 0xfff)))\n"
        "attempt('fanotify', lambda: check(libc.fanotify_init(0, 0)))\n"
    )
    outcome = await harness.run(code, inputs={"dir": str(harness.work_dir)})
    denied(outcome.stdout, "inotify_init", "watch", "fanotify")


async def test_process_count_is_bounded_for_every_uid(secrets: Path, work_dir: Path) -> None:
    from executor_worker.sandbox import build_sandbox
    from tests.security.conftest import settings_for

    box = build_sandbox(settings_for(work_dir, nproc=16, concurrency=1))
    await box.start()
    try:
        code = (
            "import os, time\n"
            "n = 0\n"
            "for _ in range(400):\n"
            "    try:\n"
            "        pid = os.fork()\n"
            "    except OSError:\n"
            "        break\n"
            "    if pid == 0:\n"
            "        time.sleep(5)\n"
            "        os._exit(0)\n"
            "    n += 1\n"
            "print('children', n)\n"
        )
        from executor_worker.sandbox import SandboxJob
        outcome = await box.run(SandboxJob(job_id="n", code=code, timeout_s=10))
    finally:
        await box.close()
    children = int(outcome.stdout.split("children ")[1].split()[0])
    layers = box.layers()
    if "uid" in layers or os.geteuid() != 0 or "cgroup" in layers:
        assert children <= 16, (children, layers)  # RLIMIT_NPROC holds (uid != 0) / pids.max
    else:
        # uid 0 is exempt from RLIMIT_NPROC: the PID namespace's pid_max is what holds.
        assert "pidns" in layers, f"a uid-0 job with no process limit at all: {layers}"
        assert children < 300, children


async def test_total_memory_of_a_job_is_bounded(harness: Harness) -> None:
    if "cgroup" not in harness.sandbox.layers():
        pytest.skip("no delegated cgroup v2 on this host (this VM is cgroup v1 hybrid): "
                    "RLIMIT_AS bounds each process, not the job's total; "
                    f"notes: {harness.sandbox.notes().get('cgroup')}")
    code = (
        "import os, time\n"
        "for _ in range(6):\n"
        "    if os.fork() == 0:\n"
        "        x = bytearray(200 * 1024 * 1024)\n"
        "        time.sleep(3)\n"
        "        os._exit(0)\n"
        "for _ in range(6):\n"
        "    os.wait()\n"
    )
    outcome = await harness.run(code, memory_mb=256, timeout_s=10)
    assert outcome.status == "failed", outcome


async def test_private_tmp_proc_and_hostname(harness: Harness) -> None:
    layers = harness.sandbox.layers()
    if "mountns" not in layers:
        pytest.skip(f"no mount namespace here: {harness.sandbox.notes().get('mountns')}")
    if "tmp" in harness.sandbox.notes():
        pytest.skip(f"no private /tmp here: {harness.sandbox.notes()['tmp']}")
    name = f"llmexec-private-{uuid.uuid4().hex[:8]}"
    code = TRY + (
        "import os, socket\n"
        f"open('/tmp/{name}', 'w').write('mine')\n"
        f"print('tmp', open('/tmp/{name}').read())\n"
        "print('host', socket.gethostname())\n"
        "attempt('sethostname', lambda: socket.sethostname('pwned'))\n"
        "attempt('write-usr', lambda: open('/usr/llmexec-pwned', 'w'))\n"
    )
    outcome = await harness.run(code)
    assert outcome.status == "succeeded", outcome
    assert "tmp mine" in outcome.stdout
    assert not _exists(f"/tmp/{name}")
    assert f"host {socket.gethostname()}" not in outcome.stdout
    assert socket.gethostname() != "pwned"
    denied(outcome.stdout, "sethostname", "write-usr")


async def test_root_worker_gives_every_job_a_uid_of_its_own(harness: Harness) -> None:
    if os.geteuid() != 0:
        pytest.skip("the worker is not root: it cannot switch uids")
    assert "uid" in harness.sandbox.layers(), harness.sandbox.notes()
    outcome = await harness.run("import os\nprint(os.getuid(), os.geteuid())")
    uid, euid = map(int, outcome.stdout.split())
    assert uid == euid and uid >= 60000
