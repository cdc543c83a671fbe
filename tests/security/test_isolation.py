"""The job against the worker, the host and other jobs: files, /proc, signals, ptrace,
privileges, symlinks, exec."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from pathlib import Path

import pytest

from executor_worker.sandbox import ZygoteSandbox, build_sandbox
from tests.security.conftest import (
    CANARY,
    SET_COMM,
    WORKER_MEMORY_SECRET,
    Harness,
    processes_named,
    settings_for,
)

pytestmark = pytest.mark.security

TRY = (
    "def attempt(label, fn):\n"
    "    try:\n"
    "        result = fn()\n"
    "        print(label, 'ALLOWED', repr(result)[:200])\n"
    "    except BaseException as exc:\n"
    "        print(label, 'DENIED', type(exc).__name__)\n"
)


def denied(stdout: str, *labels: str) -> None:
    for label in labels:
        assert f"{label} DENIED" in stdout, f"{label} was not denied:\n{stdout}"


async def test_etc_shadow_is_unreadable(harness: Harness) -> None:
    code = TRY + "attempt('shadow', lambda: open('/etc/shadow').read())\n"
    outcome = await harness.run(code)
    denied(outcome.stdout, "shadow")
    assert "root:" not in outcome.stdout


async def test_worker_environment_and_memory_are_out_of_reach(harness: Harness) -> None:
    assert WORKER_MEMORY_SECRET  # alive in this process's heap during the attack
    code = TRY + (
        "import os, re\n"
        "sup, zyg = inputs['supervisor'], inputs['zygote']\n"
        "print('env', dict(os.environ))\n"
        "attempt('sup-environ', lambda: open(f'/proc/{sup}/environ', 'rb').read())\n"
        "attempt('zyg-environ', lambda: open(f'/proc/{zyg}/environ', 'rb').read())\n"
        "attempt('self-environ', lambda: open('/proc/self/environ', 'rb').read())\n"
        "attempt('sup-cmdline', lambda: open(f'/proc/{sup}/cmdline', 'rb').read())\n"
        "def read_mem():\n"
        "    maps = open(f'/proc/{sup}/maps').read()\n"
        "    start = int(re.search(r'^([0-9a-f]+)-.*\\[heap\\]', maps, re.M).group(1), 16)\n"
        "    with open(f'/proc/{sup}/mem', 'rb') as mem:\n"
        "        mem.seek(start)\n"
        "        return mem.read(1 << 20)\n"
        "attempt('sup-mem', read_mem)\n"
        "attempt('pid1-environ', lambda: open('/proc/1/environ', 'rb').read())\n"
        "attempt('secret-file', lambda: open(inputs['secret_file']).read())\n"
    )
    outcome = await harness.run(
        code, inputs={"supervisor": os.getpid(), "secret_file": str(harness.secret_file),
                      "zygote": harness.sandbox.zygote_pid}
    )
    assert outcome.status == "succeeded", outcome
    denied(outcome.stdout, "sup-environ", "zyg-environ", "sup-mem", "pid1-environ",
           "secret-file", "sup-cmdline")
    assert "LLM_API_KEY" not in outcome.stdout


async def test_other_jobs_directories_are_invisible(harness: Harness) -> None:
    victim_code = (
        "import time\n"
        "open('private.txt', 'w').write(inputs['secret'])\n"
        "time.sleep(2.5)\n"
    )
    secret = f"victim-{CANARY[-8:]}-private"
    victim = asyncio.create_task(harness.run(victim_code, inputs={"secret": secret}))
    victim_dir = None
    for _ in range(200):  # the worker sees the victim's directory appear
        found = [p for p in harness.work_dir.iterdir() if (p / "private.txt").exists()]
        if found:
            victim_dir = found[0]
            break
        await asyncio.sleep(0.01)
    assert victim_dir is not None
    attacker_code = TRY + (
        "import os, glob\n"
        "v = inputs['victim']\n"
        "attempt('list-root', lambda: os.listdir(os.path.dirname(v)))\n"
        "attempt('list-parent', lambda: os.listdir('..'))\n"
        "attempt('list-victim', lambda: os.listdir(v))\n"
        "attempt('read-victim', lambda: open(os.path.join(v, 'private.txt')).read())\n"
        "attempt('write-victim', lambda: open(os.path.join(v, 'planted.txt'), 'w').write('x'))\n"
        "print('glob', glob.glob(os.path.dirname(v) + '/*/private.txt'))\n"
    )
    attacker = await harness.run(attacker_code, inputs={"victim": str(victim_dir)})
    outcome = await victim
    assert outcome.status == "succeeded"
    denied(attacker.stdout, "list-root", "list-parent", "list-victim", "read-victim",
           "write-victim")
    assert secret not in attacker.stdout
    assert [a.name for a in outcome.artifacts] == ["private.txt"]


async def test_concurrent_jobs_never_see_each_others_output(harness: Harness) -> None:
    code = "import time\nfor i in range(50):\n    print(inputs['tag'], i)\n    time.sleep(0.002)\n"
    outcomes = await asyncio.gather(*(harness.run(code, inputs={"tag": f"job{n}"})
                                      for n in range(6)))
    for n, outcome in enumerate(outcomes):
        lines = outcome.stdout.splitlines()
        assert len(lines) == 50 and all(line.startswith(f"job{n} ") for line in lines)


async def test_killing_the_parent_and_everyone_fails(harness: Harness) -> None:
    code = TRY + (
        "import os, signal\n"
        # The zygote by its real pid (a job in a slot's PID namespace has no visible parent:
        # getppid() is 0, and kill(0) would only hit the job's own group).
        "attempt('kill-zygote', lambda: os.kill(inputs['zygote'], signal.SIGKILL))\n"
        "if os.getppid():\n"
        "    attempt('kill-parent', lambda: os.kill(os.getppid(), signal.SIGKILL))\n"
        "else:\n"
        "    print('kill-parent DENIED (no visible parent)')\n"
        "attempt('kill-supervisor', lambda: os.kill(inputs['supervisor'], signal.SIGKILL))\n"
        "attempt('kill-init', lambda: os.kill(1, signal.SIGKILL))\n"
        "attempt('kill-all', lambda: os.kill(-1, signal.SIGKILL))\n"
        "attempt('killpg-zygote', lambda: os.killpg(os.getpgid(inputs['zygote']), 9))\n"
        "print('survived')\n"
    )
    outcome = await harness.run(code, inputs={"supervisor": os.getpid(),
                                              "zygote": harness.sandbox.zygote_pid})
    denied(outcome.stdout, "kill-zygote", "kill-parent", "kill-supervisor", "kill-init",
           "kill-all", "killpg-zygote")
    assert harness.sandbox.ready()
    after = await harness.run("print('ok')")
    assert after.stdout == "ok\n"


async def test_ptrace_and_process_memory_syscalls_fail(harness: Harness) -> None:
    code = TRY + (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def check(rc):\n"
        "    if rc == -1:\n"
        "        raise OSError(ctypes.get_errno(), 'failed')\n"
        "    return rc\n"
        "ppid = inputs['zygote']\n"
        "attempt('attach', lambda: check(libc.ptrace(16, ppid, 0, 0)))\n"
        "attempt('seize', lambda: check(libc.ptrace(0x4206, inputs['supervisor'], 0, 0)))\n"
        "attempt('traceme', lambda: check(libc.ptrace(0, 0, 0, 0)))\n"
        "buf = ctypes.create_string_buffer(64)\n"
        "attempt('vm_readv', lambda: check(libc.syscall(310, ppid, 0, 1, 0, 1, 0)))\n"
    )
    outcome = await harness.run(code, inputs={"supervisor": os.getpid(),
                                              "zygote": harness.sandbox.zygote_pid})
    denied(outcome.stdout, "attach", "seize", "traceme", "vm_readv")


async def test_ctypes_syscalls_cannot_leave_the_sandbox(harness: Harness) -> None:
    code = TRY + (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def check(rc):\n"
        "    if rc == -1:\n"
        "        raise OSError(ctypes.get_errno(), 'failed')\n"
        "    return rc\n"
        "attempt('unshare-user', lambda: check(libc.unshare(0x10000000)))\n"
        "attempt('unshare-net', lambda: check(libc.unshare(0x40000000)))\n"
        "attempt('setns', lambda: check(libc.setns(0, 0)))\n"
        "attempt('mount', lambda: check(libc.mount(b'none', b'.', b'tmpfs', 0, None)))\n"
        "attempt('chroot', lambda: check(libc.chroot(b'.')))\n"
        "attempt('keyctl', lambda: check(libc.syscall(250, 0, 0, 0, 0, 0)))\n"
        "attempt('bpf', lambda: check(libc.syscall(321, 0, 0, 0)))\n"
        "attempt('perf', lambda: check(libc.syscall(298, 0, 0, -1, -1, 0)))\n"
        "attempt('io_uring', lambda: check(libc.syscall(425, 8, 0)))\n"
        "attempt('clone-newuser', lambda: check(libc.syscall(56, 0x10000011, 0, 0, 0, 0)))\n"
        "attempt('setsid', os.setsid)\n"
        "attempt('setuid0', lambda: os.setuid(0))\n"
        "attempt('setresuid0', lambda: os.setresuid(0, 0, 0))\n"
        "attempt('sys-setuid0', lambda: check(libc.syscall(105, 0)))\n"
        "print('uid', os.getuid(), os.geteuid())\n"
    )
    outcome = await harness.run(code)
    assert outcome.status == "succeeded", outcome
    denied(outcome.stdout, "unshare-user", "unshare-net", "setns", "mount", "chroot", "keyctl",
           "bpf", "perf", "io_uring", "clone-newuser", "setsid", "setuid0", "setresuid0",
           "sys-setuid0")
    # Never uid 0 unless the worker is root; 65534 is an unmapped uid in the job's own user
    # namespace (the kernel still uses the worker's uid, or the slot's).
    uid = int(outcome.stdout.split("uid ")[1].split()[0])
    assert uid in {os.getuid(), 65534} or uid >= 60000


def escape_targets(harness: Harness, open_dir: Path) -> list[str]:
    os.chmod(open_dir, 0o777)  # world-writable: only the sandbox can stop the write
    return ["/tmp/llmexec-escape", str(open_dir / "escape"), "/dev/shm/llmexec-escape",
            str(harness.work_dir / "escape"), str(harness.work_dir.parent / "escape"),
            os.path.expanduser("~/llmexec-escape")]


def existing(paths: list[str]) -> list[str]:
    return [path for path in paths if os.path.exists(path)]


async def test_writing_outside_the_job_directory_fails(harness: Harness, tmp_path: Path) -> None:
    targets = escape_targets(harness, tmp_path)
    code = TRY + (
        "import os\n"
        "for n, t in enumerate(inputs['targets']):\n"
        "    attempt(f't{n}', lambda: open(t, 'w').write('pwned'))\n"
        "attempt('mkdir', lambda: os.mkdir('/tmp/llmexec-escape-dir'))\n"
        "attempt('mknod', lambda: os.mknod('dev', 0o20666, os.makedev(1, 3)))\n"
    )
    outcome = await harness.run(code, inputs={"targets": targets})
    # With a mount namespace /tmp and /dev/shm are the job's own tmpfs: writing there works
    # and reaches nothing of the host (the check below is on the host's paths).
    private = ("/tmp/llmexec-escape", "/dev/shm/llmexec-escape")
    own_tmp = "mountns" in harness.sandbox.layers()
    denied(outcome.stdout, *(f"t{n}" for n, t in enumerate(targets)
                             if not (own_tmp and t in private)), "mknod")
    if not own_tmp:
        denied(outcome.stdout, "mkdir")
    assert existing([*targets, "/tmp/llmexec-escape-dir"]) == []


async def test_symlink_and_hardlink_tricks_return_nothing_outside(harness: Harness) -> None:
    code = TRY + (
        "import os\n"
        "os.symlink('/etc/shadow', 'shadow.txt')\n"
        "os.symlink(inputs['secret_file'], 'secret.txt')\n"
        "os.symlink('/etc', 'etc-dir')\n"
        "os.symlink('..', 'up')\n"
        "attempt('hardlink-shadow', lambda: os.link('/etc/shadow', 'hard.txt'))\n"
        "attempt('hardlink-secret', lambda: os.link(inputs['secret_file'], 'hard2.txt'))\n"
        "attempt('read-through-link', lambda: open('secret.txt').read())\n"
        "open('fine.txt', 'w').write('ok')\n"
    )
    outcome = await harness.run(code, inputs={"secret_file": str(harness.secret_file)})
    assert outcome.status == "succeeded", outcome
    denied(outcome.stdout, "hardlink-shadow", "hardlink-secret", "read-through-link")
    assert [a.name for a in outcome.artifacts] == ["fine.txt"]
    assert base64.b64decode(outcome.artifacts[0].content_b64 or "") == b"ok"


async def test_running_other_programs_is_refused(harness: Harness) -> None:
    code = TRY + (
        "import os, subprocess\n"
        "attempt('subprocess', lambda: subprocess.run(['/bin/sh', '-c', 'id'], check=True))\n"
        "attempt('execv', lambda: os.execv('/usr/bin/id', ['id']))\n"
        "attempt('system', lambda: 1 / (os.system('id > out.txt') == 0))\n"
    )
    outcome = await harness.run(code)
    denied(outcome.stdout, "subprocess", "execv", "system")
    assert "uid=" not in outcome.stdout


async def test_inputs_and_artifacts_round_trip(harness: Harness) -> None:
    code = (
        "import json\n"
        "assert json.load(open('inputs.json')) == inputs\n"
        "open('result.json', 'w').write(json.dumps({'sum': sum(inputs['xs'])}))\n"
        "print(inputs['name'])\n"
    )
    outcome = await harness.run(code, inputs={"xs": [1, 2, 3], "name": "héllo"})
    assert outcome.status == "succeeded", outcome
    assert outcome.stdout == "héllo\n"
    [artifact] = outcome.artifacts
    assert artifact.name == "result.json"
    assert base64.b64decode(artifact.content_b64 or "") == b'{"sum": 6}'
    await harness.sandbox.settle()  # teardown runs after the result
    assert harness.left_behind() == []  # job directories are removed


async def test_a_job_that_locks_its_own_directory_is_still_cleaned_up(harness: Harness) -> None:
    code = (
        "import os\n"
        "os.makedirs('deep/er')\n"
        "open('deep/er/f.txt', 'w').write('x')\n"
        "for p in ('deep/er', 'deep'):\n"
        "    try:\n"
        "        os.chmod(p, 0)\n"
        "    except PermissionError:\n"
        "        pass  # refused outright where the job shares the worker's uid\n"
    )
    outcome = await harness.run(code)
    assert outcome.status == "succeeded", outcome
    await harness.sandbox.settle()  # teardown runs after the result
    assert harness.left_behind() == []


async def test_job_environment_is_empty_of_the_workers(harness: Harness) -> None:
    code = "import json, os\nprint(json.dumps(sorted(os.environ)))\n"
    outcome = await harness.run(code)
    names = json.loads(outcome.stdout)
    assert set(names) <= {"HOME", "TMPDIR", "LC_CTYPE", "OMP_NUM_THREADS",
                          "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"}


SLOT_PLANT = SET_COMM + (
    "import ctypes, os, time\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "for d in ('/tmp', '/var/tmp', '/dev/shm'):\n"
    "    try:\n"
    "        open(f'{d}/left-by-a', 'w').write('a')\n"
    "    except OSError:\n"
    "        pass\n"
    # What could outlive the job in its directory, were it kept for the slot's next job:
    # its mode, an extended attribute, a tree it locked, a fifo, a link, our own files.
    "def attempt(what, call, *args):\n"
    "    try:\n"
    "        call(*args)\n"
    "        print(what, 'allowed')\n"
    "    except OSError as exc:\n"
    "        print(what, 'refused', exc.errno)\n"
    "print('mode', oct(os.stat('.').st_mode))\n"
    "attempt('chmod', os.chmod, '.', 0o777)\n"
    "attempt('xattr', os.setxattr, '.', 'user.left-by-a', b'a')\n"
    "attempt('utime', os.utime, '.', (1, 1))\n"
    "os.makedirs('locked/deeper')\n"
    "open('locked/deeper/left-by-a', 'w').write('a')\n"
    "attempt('lock deeper', os.chmod, 'locked/deeper', 0)\n"
    "attempt('lock', os.chmod, 'locked', 0)\n"
    "attempt('fifo', os.mkfifo, 'fifo-left-by-a')\n"
    "attempt('symlink', os.symlink, '/etc/passwd', 'link-left-by-a')\n"
    "attempt('unlink main.py', os.unlink, 'main.py')\n"
    "attempt('write main.py', lambda: open('main.py', 'a').write('left-by-a'))\n"
    "attempt('link main.py', os.link, 'main.py', 'linked-left-by-a')\n"
    "attempt('replace inputs.json', os.rename, 'locked', 'inputs.json')\n"
    "print('shm', libc.shmget(0x5107, 4096, 0o1666))\n"  # IPC_CREAT | 0666
    "print('msg', libc.msgget(0x5107, 0o1666))\n"
    "print('sem', libc.semget(0x5107, 1, 0o1666))\n"
    "print('keyless-shm', libc.shmget(0, 4096, 0o1666))\n"  # IPC_PRIVATE: found by index
    # O_CREAT | O_RDWR; Landlock refuses it (EACCES: the queue is a file of no allowed
    # tree), so it is made only where that layer is off.
    "print('mq', libc.mq_open(b'/left-by-a', 0o102, 0o666, None), ctypes.get_errno())\n"
    "if os.fork() == 0:\n"
    "    try:\n"
    "        os.setsid()  # out of the job's process group, where seccomp allows it\n"
    "    except OSError:\n"
    "        pass\n"
    "    set_comm('slotleft-sec')\n"
    "    time.sleep(60)\n"
    "    os._exit(0)\n"
    # The interpreter state the slot's job processes share at their fork: the job's own
    # __main__ (made by the slot's init, the same record for every job of the slot), a
    # module every job finds imported, and a builtin.
    "import __main__, builtins, json\n"
    "__main__.main_left_by_a = 1\n"
    "json.left_by_a = 1\n"
    "builtins.left_by_a = 1\n"
    "print('uid', os.getuid())\n"
)
SLOT_CHECK = SET_COMM + (
    "import ctypes, os\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "print('mode', oct(os.stat('.').st_mode))\n"
    "print('xattrs', os.listxattr('.'))\n"
    "print('here', sorted(os.listdir('.')))\n"
    "print('inputs', open('inputs.json').read())\n"
    "import hashlib\n"
    "print('main', hashlib.sha256(open('main.py', 'rb').read()).hexdigest())\n"
    "for d in ('/tmp', '/var/tmp', '/dev/shm'):\n"
    "    try:\n"
    "        print(d, sorted(os.listdir(d)))\n"
    "    except OSError as exc:\n"
    "        print(d, 'unreadable', type(exc).__name__)\n"
    "print('shm', libc.shmget(0x5107, 0, 0), ctypes.get_errno())\n"
    "print('msg', libc.msgget(0x5107, 0), ctypes.get_errno())\n"
    "print('sem', libc.semget(0x5107, 0, 0), ctypes.get_errno())\n"
    "print('mq', libc.mq_open(b'/left-by-a', 2, 0, None), ctypes.get_errno())\n"
    # What the IPC namespace holds, whatever the keys: *_INFO's count of objects in use
    # (shm_info.used_ids, seminfo.semusz, msginfo.msgpool).
    "info = ctypes.create_string_buffer(256)\n"
    "counts = []\n"
    "for call, cmd, at in ((libc.shmctl, 14, 0), (libc.msgctl, 12, 0)):\n"
    "    counts.append(int.from_bytes(info[at * 4:at * 4 + 4], 'little')\n"
    "                  if call(0, cmd, info) >= 0 else -1)\n"
    "counts.append(int.from_bytes(info[28:32], 'little')\n"
    "              if libc.semctl(0, 0, 19, info) >= 0 else -1)\n"
    "print('ipc in use', counts)\n"
    "comms = []\n"
    "for p in os.listdir('/proc'):\n"
    "    if p.isdigit():\n"
    "        try:\n"
    "            comms.append(open(f'/proc/{p}/comm').read().strip())\n"
    "        except OSError:\n"
    "            pass\n"
    "print('procs', comms)\n"
    "import __main__, builtins, json\n"
    "print('state', sorted(n for n in (*vars(__main__), *vars(json), *vars(builtins))\n"
    "                      if 'left_by' in n))\n"
    "print('uid', os.getuid())\n"
)


@pytest.mark.parametrize("disabled", ["", "seccomp"])
async def test_a_slot_reused_by_the_next_job_holds_nothing_of_the_last(
    secrets: Path, work_dir: Path, disabled: str
) -> None:
    """One job slot (and its uid, and on root hosts its PID namespace) serves job after job:
    the next job in it finds no file, /tmp entry, IPC object or process of the last one.
    Without seccomp the planted process leaves the job's process group (setsid), so only
    the slot's sweep can catch it."""
    sandbox = build_sandbox(settings_for(work_dir, concurrency=1, disable_layers=disabled,
                                         allow_degraded=bool(disabled)))
    assert isinstance(sandbox, ZygoteSandbox)
    await sandbox.start()
    try:
        box = Harness(sandbox, sandbox.job_root, secrets)
        planted = await box.run(SLOT_PLANT)
        assert planted.status == "succeeded", planted
        if "ipcns" in sandbox.layers():  # the plant made every kind of IPC object
            made = {words[0]: int(words[1])
                    for words in map(str.split, planted.stdout.splitlines())
                    if words and words[0] in ("shm", "msg", "sem", "keyless-shm")}
            assert len(made) == 4 and min(made.values()) >= 0, planted
        mode_before = next(line for line in planted.stdout.splitlines()
                           if line.startswith("mode "))
        await sandbox.settle()  # the slot is swept before it is free again
        assert processes_named("slotleft-sec") == []
        # Two slots per concurrent job: the second job after the plant reuses its slot.
        for _ in range(2):
            checked = await box.run(SLOT_CHECK, inputs={"check": 1})
            assert checked.status == "succeeded", checked
            out = checked.stdout
            assert "left-by-a" not in out, out
            assert "slotleft-sec" not in out, out
            shm = next(line for line in out.splitlines() if line.startswith("shm "))
            msg = next(line for line in out.splitlines() if line.startswith("msg "))
            assert shm.split()[1] == "-1" and msg.split()[1] == "-1", out
            sem = next(line for line in out.splitlines() if line.startswith("sem "))
            mq = next(line for line in out.splitlines() if line.startswith("mq "))
            assert sem.split()[1] == "-1" and mq.split()[1] == "-1", out
            if "ipcns" in sandbox.layers():  # the namespace the job sees holds nothing
                assert "ipc in use [0, 0, 0]" in out.splitlines(), out
            # Its directory is as new: the mode it had, no attribute, our two files only.
            assert mode_before in out.splitlines(), (mode_before, out)
            assert "xattrs []" in out.splitlines(), out
            assert "state []" in out.splitlines(), out  # no interpreter state carried over
            assert "here ['inputs.json', 'main.py']" in out.splitlines(), out
            assert 'inputs {"check": 1}' in out.splitlines(), out
            own = hashlib.sha256(SLOT_CHECK.encode()).hexdigest()
            assert f"main {own}" in out.splitlines(), out  # its own code, nothing left
            await sandbox.settle()
        uid_of = [line for line in (planted.stdout + checked.stdout).splitlines()
                  if line.startswith("uid ")]
        assert len(uid_of) == 2 and uid_of[0] == uid_of[1], uid_of  # the same slot
    finally:
        await sandbox.close()


WRITE_PRIVATE_DIRS = (
    # Each is the job's own unless the host keeps it (a checkout or venv under /tmp keeps
    # the host's /tmp, which the job may not write): what one job may write, all may.
    "for d in ('/tmp', '/var/tmp', '/dev/shm'):\n"
    "    try:\n"
    "        with open(f'{d}/written', 'w') as fh:\n"
    "            fh.write('x')\n"
    "        print(d, 'written')\n"
    "    except OSError as exc:\n"
    "        print(d, 'refused', exc.errno)\n"
)


async def test_a_slots_private_directories_stay_writable_job_after_job(
    secrets: Path, work_dir: Path
) -> None:
    """Every job that writes to a private tmpfs gets it replaced before the slot's next job
    (see the slot-reuse test); the Landlock rules made for the old ones must not outlive
    them, or the next job could no longer write where every job may."""
    sandbox = build_sandbox(settings_for(work_dir, concurrency=1))
    assert isinstance(sandbox, ZygoteSandbox)
    await sandbox.start()
    try:
        box = Harness(sandbox, sandbox.job_root, secrets)
        first = await box.run("import os\n" + WRITE_PRIVATE_DIRS)
        assert first.status == "succeeded", first
        private = {"/var/tmp written", "/dev/shm written"} & set(first.stdout.splitlines())
        assert private, first.stdout  # a private tmpfs was written: the next sweep replaces it
        for _ in range(4):  # both slots, twice
            await sandbox.settle()
            again = await box.run("import os\n" + WRITE_PRIVATE_DIRS)
            assert again.status == "succeeded", again
            assert again.stdout == first.stdout, (first.stdout, again.stdout)
    finally:
        await sandbox.close()
