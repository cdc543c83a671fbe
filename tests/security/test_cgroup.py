"""A cgroup v2 per job, through the real zygote, against a fake cgroupfs tree of our own.

This VM is cgroup v1 hybrid: no v2 hierarchy with the memory/pids/cpu controllers can be
delegated here, so nothing below is enforced by the kernel. What is checked is the wiring:
the zygote takes the delegated directory over, creates one ``job-<n>`` cgroup per job with
the job's limits, the job's process joins it before its code runs, the cgroup is gone once
the job's last process is reaped, and the ``cgroup`` layer is reported (or, where the tree
lacks a controller or cannot be written, is off with the reason, and ``strict`` refuses).
The kernel's own part (interface files appearing on mkdir and vanishing on rmdir) is
emulated by cgroup.py on a fake tree, which also records each cgroup's files at removal.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import pytest

from executor_worker.sandbox import (
    SandboxJob,
    SandboxRefused,
    SandboxUnavailable,
    ZygoteSandbox,
)
from tests.security.conftest import settings_for

pytestmark = pytest.mark.security

_OWN = "llmexec.slice/worker"


def _fake_cgroupfs(root: Path, controllers: str = "cpu memory pids") -> tuple[Path, Path, Path]:
    """(mount, the delegated directory, the /proc/self/cgroup stand-in), as the kernel
    presents them: the root lists every controller, the delegated group what it was given."""
    mount = root / "cgroupfs"
    own = mount / _OWN
    own.mkdir(parents=True)
    (mount / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
    for name, text in (("cgroup.controllers", controllers + "\n"),
                       ("cgroup.subtree_control", ""), ("cgroup.procs", ""),
                       ("cgroup.type", "domain\n")):
        (own / name).write_text(text)
    self_cgroup = root / "proc-self-cgroup"
    self_cgroup.write_text(f"0::/{_OWN}\n")
    return mount, own, self_cgroup


_JOB = (
    "import os, time\n"
    "print(os.getpid(), time.time_ns(), flush=True)\n"
    "if inputs.get('fork'):\n"
    "    if os.fork() == 0:\n"
    "        time.sleep(30)\n"  # left running: killed with the job, its cgroup still goes
    "        os._exit(0)\n"
    "while inputs.get('spin'):\n"
    "    pass\n"
)


async def test_each_job_runs_in_a_cgroup_of_its_own(work_dir: Path) -> None:
    mount, own, self_cgroup = _fake_cgroupfs(work_dir)
    (own / "cgroup.procs").write_text(f"{os.getpid()}\n")  # the worker, where it started
    settings = settings_for(work_dir, cpu_quota=0.5, nproc=48)
    box = ZygoteSandbox(settings, _fake_cgroupfs=(str(mount), str(self_cgroup)))
    await box.start()
    try:
        assert "cgroup" in box.layers(), box.notes()
        assert "cgroup" not in box.notes()
        # The zygote moved itself into a leaf and enabled the controllers for its siblings.
        assert (own / "zygote" / "cgroup.procs").read_text() == str(box.zygote_pid)
        assert (own / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"
        # What else was in the delegated cgroup (the worker) went to a leaf of its own.
        assert (own / "worker" / "cgroup.procs").read_text() == str(os.getpid())
        memories = [64, 96, 128, 160, 192, 224]
        # One leaves a process behind, one is killed at its timeout: their cgroups go too.
        outcomes = await asyncio.gather(*(
            box.run(SandboxJob(job_id=uuid.uuid4().hex, code=_JOB, memory_mb=mb,
                               timeout_s=1 if mb == 128 else 10,
                               inputs={"fork": mb == 96, "spin": mb == 128}))
            for mb in memories))
        await box.settle()
        # Gone once each job's last process was reaped (the forked sleeper included).
        assert sorted(p.name for p in own.iterdir() if p.is_dir()) == ["worker", "zygote"]
    finally:
        await box.close()
    for mb, outcome in zip(memories, outcomes, strict=True):
        assert outcome.status == ("timed_out" if mb == 128 else "succeeded"), outcome
        assert "cgroup" in outcome.layers
    records = [json.loads(line) for line in (own / "writes.log").read_text().splitlines()]
    assert len(records) == len(memories)
    assert len({r["name"] for r in records}) == len(memories)  # one cgroup per job
    by_memory = {int(r["memory.max"]): r for r in records}
    for mb, outcome in zip(memories, outcomes, strict=True):
        record = by_memory[mb << 20]
        assert record["name"].startswith("job-")
        assert record["memory.swap.max"] == "0"
        assert record["pids.max"] == "48"
        assert record["cpu.max"] == "50000 100000"
        pid, started_ns = (int(v) for v in outcome.stdout.split())
        # The job's own process wrote its pid (as its PID namespace numbers it) ...
        assert record["cgroup.procs"] == str(pid)
        # ... before its code started (file times come from the coarse clock, which never
        # runs ahead of the fine one the job read).
        assert int(record["cgroup.procs.mtime_ns"]) <= started_ns


async def test_a_job_whose_cgroup_cannot_be_made_never_runs(work_dir: Path) -> None:
    mount, own, self_cgroup = _fake_cgroupfs(work_dir)
    box = ZygoteSandbox(settings_for(work_dir),
                        _fake_cgroupfs=(str(mount), str(self_cgroup)))
    await box.start()
    marker = work_dir / "ran"
    try:
        assert "cgroup" in box.layers(), box.notes()
        moved = own.with_name("moved")
        own.rename(moved)  # the delegated cgroup went away under the zygote
        try:
            with pytest.raises(SandboxUnavailable, match="cannot create the job's cgroup"):
                await box.run(SandboxJob(job_id="j", timeout_s=10,
                                         code=f"open({str(marker)!r}, 'w').close()"))
        finally:
            moved.rename(own)
        assert not marker.exists()
        # Reported as a setup failure over the control channel; the zygote serves on.
        outcome = await box.run(SandboxJob(job_id="k", code="print(2)", timeout_s=10))
        assert outcome.status == "succeeded" and outcome.stdout == "2\n"
        await box.settle()
        assert sorted(p.name for p in own.iterdir() if p.is_dir()) == ["zygote"]
    finally:
        await box.close()


@pytest.mark.parametrize("flaw", ["lacks memory and pids", "not writable"])
async def test_unusable_tree_turns_the_layer_off_and_strict_refuses(
    work_dir: Path, flaw: str
) -> None:
    if flaw == "lacks memory and pids":
        mount, own, self_cgroup = _fake_cgroupfs(work_dir, controllers="cpu io")
        reason = "memory, pids"
    else:
        mount, own, self_cgroup = _fake_cgroupfs(work_dir)
        # Root ignores file modes: a write the kernel refuses, whoever the writer is.
        (own / "cgroup.subtree_control").unlink()
        (own / "cgroup.subtree_control").mkdir()
        for path in (own / "cgroup.procs", own / "cgroup.controllers"):
            path.chmod(0o444)
        own.chmod(0o555)
        reason = "cannot" if os.geteuid() == 0 else "not writable"
    fake = (str(mount), str(self_cgroup))
    try:
        box = ZygoteSandbox(settings_for(work_dir), _fake_cgroupfs=fake)
        await box.start()
        try:
            assert "cgroup" not in box.layers()
            assert reason in box.notes()["cgroup"], box.notes()
            outcome = await box.run(SandboxJob(job_id="j", code="print(1)", timeout_s=10))
            assert outcome.status == "succeeded" and "cgroup" not in outcome.layers
        finally:
            await box.close()
        strict = ZygoteSandbox(settings_for(work_dir, level="strict"), _fake_cgroupfs=fake)
        with pytest.raises(SandboxRefused) as refused:
            await strict.start()
        assert "cgroup" in str(refused.value) and reason in str(refused.value)
        assert not any(p.name.startswith("job-") for p in own.iterdir())
    finally:
        own.chmod(0o755)


async def test_disabled_layer_says_so(work_dir: Path) -> None:
    mount, own, self_cgroup = _fake_cgroupfs(work_dir)
    box = ZygoteSandbox(settings_for(work_dir, disable_layers="cgroup"),
                        _fake_cgroupfs=(str(mount), str(self_cgroup)))
    await box.start()
    try:
        assert "cgroup" not in box.layers()
        assert "disabled" in box.notes()["cgroup"]
        assert not (own / "zygote").exists()
    finally:
        await box.close()
