"""Issue 9: the supervisor treats the job directory as hostile. Names are bytes, depth and
counts are the job's to choose, permissions are the job's to break — none of it may cost a
result, a hang, a leftover directory or a worker that no longer starts. And the job cannot
pass itself off as a broken sandbox."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from pathlib import Path

import pytest

from executor_worker.sandbox import SandboxJob, SandboxUnavailable, ZygoteSandbox, build_sandbox
from executor_worker.sandbox.zygote_child import SETUP_FAILED_MARKER
from tests.security.conftest import SET_COMM, Harness, processes_named, settings_for

pytestmark = pytest.mark.security


def _exists(path: str) -> bool:
    return os.path.exists(path)

DEEP = (
    "import os\n"
    "for _ in range(inputs['depth']):\n"
    "    os.mkdir('d')\n"
    "    os.chdir('d')\n"
    "open('bottom.txt', 'w').write('x')\n"
)


async def test_non_utf8_names_are_escaped_not_fatal(harness: Harness) -> None:
    code = (
        "import os\n"
        "open(b'caf\\xe9-\\xff.txt', 'wb').write(b'latin')\n"
        "os.mkdir(b'\\xfe-dir')\n"
        "open(b'\\xfe-dir/inner', 'wb').write(b'x')\n"
        "open('plain.txt', 'w').write('ok')\n"
    )
    outcome = await harness.run(code)
    assert outcome.status == "succeeded", outcome
    names = sorted(a.name for a in outcome.artifacts)
    assert "plain.txt" in names and len(names) == 3, names
    for artifact in outcome.artifacts:
        json.loads(artifact.model_dump_json())  # serialisable, whatever the name was
        artifact.name.encode("utf-8")  # no lone surrogates
    assert any("\\xe9" in n or "%E9" in n.upper() for n in names), names
    await harness.sandbox.settle()  # teardown runs after the result
    assert harness.left_behind() == []


async def test_deep_trees_cost_neither_the_result_nor_the_directory(harness: Harness) -> None:
    outcome = await harness.run(DEEP, inputs={"depth": 2500}, timeout_s=20)
    assert outcome.status == "succeeded", outcome
    await harness.sandbox.settle()  # teardown runs after the result
    assert harness.left_behind() == []
    assert (await harness.run("print('ok')")).stdout == "ok\n"


async def test_huge_counts_are_bounded(harness: Harness) -> None:
    code = (
        "import os\n"
        "for i in range(20000):\n"
        "    open(f'f{i}', 'w').close()\n"
        "for i in range(3000):\n"
        "    os.mkdir(f'dir{i}')\n"
    )
    start = time.monotonic()
    outcome = await harness.run(code, timeout_s=30)
    assert outcome.status == "succeeded", outcome
    assert len(outcome.artifacts) <= 64
    assert time.monotonic() - start < 25
    await harness.sandbox.settle()  # teardown runs after the result
    assert harness.left_behind() == []


async def test_a_job_that_locks_and_links_its_tree_is_still_removed(harness: Harness) -> None:
    code = (
        "import os\n"
        "os.makedirs('a/b/c')\n"
        "open('a/b/c/f', 'w').write('x')\n"
        "os.symlink('/etc', 'a/etc')\n"
        "os.symlink('..', 'a/b/up')\n"
        "os.mkfifo('fifo')\n"
        "for p in ('a/b/c', 'a/b', 'a'):\n"
        "    try:\n"
        "        os.chmod(p, 0)\n"
        "    except OSError:\n"
        "        pass\n"
    )
    outcome = await harness.run(code)
    assert outcome.status == "succeeded", outcome
    await harness.sandbox.settle()  # teardown runs after the result
    assert harness.left_behind() == []
    assert _exists("/etc/passwd")  # nothing followed a link out


async def test_the_setup_failure_marker_from_a_job_is_just_its_output(harness: Harness) -> None:
    code = (
        "import sys\n"
        f"sys.stderr.write({SETUP_FAILED_MARKER!r} + ' OSError: fake\\n')\n"
        "sys.exit(119)\n"
    )
    outcome = await harness.run(code)  # no SandboxUnavailable: the job ran, this is its result
    assert (outcome.status, outcome.exit_code) == ("failed", 119), outcome
    assert outcome.reason_code == "nonzero_exit"


def _poison(instance: Path) -> None:
    instance.mkdir(parents=True)
    deep = instance / "job-deep"
    deep.mkdir()
    fd = os.open(deep, os.O_RDONLY)
    for _ in range(2500):  # deeper than any recursion limit, without long paths
        os.mkdir("d", dir_fd=fd)
        nxt = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nxt
    os.close(fd)
    odd = instance / "job-odd"
    odd.mkdir()
    (odd / "sub").mkdir()
    open(os.path.join(os.fsencode(odd), b"\xff\xfe"), "wb").close()
    os.symlink("/etc", odd / "link")
    os.chmod(odd / "sub", 0)
    os.chmod(odd, 0)


async def test_the_worker_starts_on_a_poisoned_work_dir(work_dir: Path) -> None:
    jobs = work_dir / "jobs"
    dead = jobs / f"sbx.{socket.gethostname()}.999999998.deadbeef"
    _poison(dead)
    for attempt in range(2):  # and again: whatever was left must not stop the next start
        sandbox = build_sandbox(settings_for(work_dir))
        assert isinstance(sandbox, ZygoteSandbox)
        await sandbox.start()
        try:
            outcome = await sandbox.run(SandboxJob(job_id=f"p{attempt}", code="print(1)"))
            assert outcome.stdout == "1\n"
        finally:
            await sandbox.close()
        assert not dead.exists(), f"start {attempt}: the dead instance was left in place"
        assert not (jobs / ".quarantine").exists(), "removable, yet quarantined"
    assert _exists("/etc/passwd")  # nothing followed a link out


REMOVE_OWN_DIR = SET_COMM + (
    "import os, time\n"
    "here = os.getcwd()\n"
    "for name in os.listdir('.'):\n"
    "    try:\n"
    "        os.unlink(name)\n"
    "    except OSError as exc:\n"
    "        print('unlink', name, type(exc).__name__, flush=True)\n"
    "for target in (here, '/tmp', '.'):\n"
    "    try:\n"
    "        os.rmdir(target)\n"
    "        print('rmdir', target, 'ALLOWED', flush=True)\n"
    "    except OSError as exc:\n"
    "        print('rmdir', target, type(exc).__name__, flush=True)\n"
    "if os.fork() == 0:\n"
    "    set_comm('rmdirkid-sec')\n"
    "    time.sleep(60)\n"
    "    os._exit(0)\n"
    "set_comm('rmdirjob-sec')\n"
    "print('sleeping', flush=True)\n"
    "if inputs['hang']:\n"
    "    time.sleep(60)\n"
)


@pytest.mark.parametrize("hang", [True, False])
async def test_a_job_that_removes_its_own_directory_is_still_killed(
    harness: Harness, hang: bool
) -> None:
    """The job empties (and tries to remove) its working directory, leaves a child and then
    hangs or exits: the kill of its process group still happens, the result is the job's,
    and the directory is gone afterwards."""
    outcome = await harness.run(REMOVE_OWN_DIR, timeout_s=1.5, inputs={"hang": hang})
    assert "sleeping" in outcome.stdout, outcome
    assert outcome.status == ("timed_out" if hang else "succeeded"), outcome
    await harness.sandbox.settle()
    for _ in range(50):
        if not processes_named("rmdirkid-sec") + processes_named("rmdirjob-sec"):
            break
        await asyncio.sleep(0.02)
    assert processes_named("rmdirkid-sec") == [] and processes_named("rmdirjob-sec") == []
    assert harness.left_behind() == []
    after = await harness.run("print('ok')")
    assert after.stdout == "ok\n"


@pytest.mark.parametrize("hang", [True, False])
async def test_a_job_that_really_removes_its_own_directory_is_still_killed(
    secrets: Path, work_dir: Path, hang: bool
) -> None:
    """Where nothing stops the job from removing its directory (no Landlock, no uid, no
    mount namespace: a degraded sandbox, but the supervisor must hold even there)."""
    sandbox = build_sandbox(settings_for(
        work_dir, disable_layers="landlock-fs,uid,netns,userns,pidns,mountns,ipcns,utsns",
        allow_degraded=True))
    assert isinstance(sandbox, ZygoteSandbox)
    await sandbox.start()
    try:
        box = Harness(sandbox, sandbox.job_root, secrets)
        outcome = await box.run(REMOVE_OWN_DIR, timeout_s=1.5, inputs={"hang": hang})
        assert "ALLOWED" in outcome.stdout, outcome  # the directory really went
        await test_a_job_that_removes_its_own_directory_is_still_killed(box, hang)
    finally:
        await sandbox.close()


async def test_children_armed_ahead_run_only_the_job_they_were_armed_for(work_dir: Path) -> None:
    """Where the host allows (root, per-slot uids, no job cgroups), a slot's child is
    confined to the slot's directory before any job exists (its trace says when). A child
    armed for one directory refuses a job sent with another: a setup failure, and no code
    runs."""
    sandbox = build_sandbox(settings_for(work_dir, concurrency=1, trace=True))
    assert isinstance(sandbox, ZygoteSandbox)
    await sandbox.start()
    try:
        if not sandbox.slot_dirs():
            pytest.skip("children are not armed ahead here (unprivileged host or job cgroups)")
        # Armed before the job was sent (given the time: right after the start the job may
        # come first, and then waits in the channel until the child is armed).
        armed_ahead = []
        for attempt in range(20):
            await asyncio.sleep(0.05 * attempt)
            ran = await sandbox.run(SandboxJob(job_id="armed", code="print('ok')", timeout_s=5))
            assert ran.stdout == "ok\n", ran
            await sandbox.settle()
            trace = sandbox.traces[-1]
            assert trace["t_armed"] < trace["t_confined"], trace
            if trace["t_armed"] < trace["t_run"]:
                armed_ahead.append(trace)
                break
        assert armed_ahead, list(sandbox.traces)
        # The supervisor sends the next jobs with other directories while the children
        # wait, armed for their slots' own.
        for slot, path in list(sandbox._slot_dirs.items()):  # a confused supervisor
            other = path.with_name(f"other-{slot}")
            other.mkdir(mode=0o1770)
            sandbox._slot_dirs[slot] = other
        for _ in range(2):  # both slots
            with pytest.raises(SandboxUnavailable, match="not the one this process was armed"):
                await sandbox.run(SandboxJob(job_id="other", code="print('ran')", timeout_s=5))
    finally:
        await sandbox.close()
