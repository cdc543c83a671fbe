"""The per-job cgroup v2 files, written against a fake cgroupfs tree of our own (this VM is
cgroup v1 hybrid: the real hierarchy cannot be delegated here)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from executor_worker.sandbox import cgroup


def _fake_tree(tmp_path: Path, controllers: str = "cpu memory pids io") -> tuple[Path, Path]:
    mount = tmp_path / "sys-fs-cgroup"
    own = mount / "worker.slice" / "llmexec"
    own.mkdir(parents=True)
    (mount / "cgroup.controllers").write_text(controllers + "\n")
    for name, text in (("cgroup.controllers", controllers + "\n"),
                       ("cgroup.subtree_control", ""), ("cgroup.procs", "")):
        (own / name).write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("4:memory:/x\n0::/worker.slice/llmexec\n")
    return mount, proc


def test_v1_host_says_why(tmp_path: Path) -> None:
    base, why = cgroup.detect(str(tmp_path), str(tmp_path / "none"))
    assert base is None and "cgroup v1 or hybrid" in why


def test_missing_controller_is_named(tmp_path: Path) -> None:
    mount, proc = _fake_tree(tmp_path, controllers="cpu io")
    base, why = cgroup.detect(str(mount), str(proc))
    assert base is None and "memory, pids" in why


def test_no_v2_line_in_proc_self_cgroup(tmp_path: Path) -> None:
    mount, proc = _fake_tree(tmp_path)
    proc.write_text("4:memory:/x\n")
    assert cgroup.detect(str(mount), str(proc))[0] is None


def test_delegated_subtree_is_found_and_job_limits_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount, proc = _fake_tree(tmp_path)
    base, why = cgroup.detect(str(mount), str(proc))
    assert why == "" and base == str(mount / "worker.slice" / "llmexec")
    # The kernel creates the interface files on mkdir; a fake tree needs them made.
    job = Path(base) / "job-7"
    limits = cgroup.JobLimits(memory_bytes=256 << 20, pids=66, cpu_quota=1.5)
    real_mkdir = os.mkdir

    def mkdir_with_files(path: str, mode: int = 0o777) -> None:
        real_mkdir(path, mode)
        for name in ("memory.max", "memory.swap.max", "pids.max", "cpu.max", "cgroup.procs"):
            Path(path, name).write_text("")

    monkeypatch.setattr(os, "mkdir", mkdir_with_files)
    path = cgroup.create(base, "job-7", limits)
    assert path == str(job)
    assert (job / "memory.max").read_text() == str(256 << 20)
    assert (job / "memory.swap.max").read_text() == "0"
    assert (job / "pids.max").read_text() == "66"
    assert (job / "cpu.max").read_text() == "150000 100000"
    cgroup.join(path, 4242)
    assert (job / "cgroup.procs").read_text() == "4242"


def test_take_over_moves_the_zygote_to_a_leaf_and_enables_controllers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount, proc = _fake_tree(tmp_path)
    base, _ = cgroup.detect(str(mount), str(proc))
    assert base is not None
    real_makedirs = os.makedirs

    def makedirs_with_procs(path: str, mode: int = 0o777, exist_ok: bool = False) -> None:
        real_makedirs(path, mode, exist_ok)
        Path(path, "cgroup.procs").touch()

    monkeypatch.setattr(os, "makedirs", makedirs_with_procs)
    cgroup.take_over(base, 99)
    assert (Path(base) / "zygote" / "cgroup.procs").read_text() == "99"
    assert (Path(base) / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"


def test_failed_limit_write_leaves_no_cgroup(tmp_path: Path) -> None:
    mount, proc = _fake_tree(tmp_path)
    base, _ = cgroup.detect(str(mount), str(proc))
    assert base is not None
    # memory.max does not exist in a bare directory: the write fails
    with contextlib.suppress(OSError):
        cgroup.create(base, "job-8", cgroup.JobLimits(memory_bytes=1, pids=1))
    assert not (Path(base) / "job-8").exists()
    assert cgroup.remove(str(Path(base) / "job-8")) is False


def _emulated_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    mount, proc = _fake_tree(tmp_path)
    base, _ = cgroup.detect(str(mount), str(proc))
    assert base is not None
    monkeypatch.setattr(cgroup, "_emulated", True)
    path = cgroup.create(base, "job-1", cgroup.JobLimits(memory_bytes=1 << 20, pids=4))
    return base, Path(path)


def test_busy_cgroup_is_killed_and_removed_once_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, job = _emulated_job(tmp_path, monkeypatch)
    (job / "child").mkdir()  # the emulation's stand-in for "still populated": rmdir refused
    assert cgroup.release(str(job)) is False
    assert (job / "cgroup.kill").read_text() == "1"
    assert job.is_dir()
    (job / "child").rmdir()
    assert cgroup.release(str(job)) is True
    assert not job.exists()
    assert cgroup.release(str(job)) is True  # already gone: nothing left to do


def test_kill_without_cgroup_kill_signals_each_listed_pid(tmp_path: Path) -> None:
    import subprocess

    job = tmp_path / "job-2"
    job.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (job / "cgroup.procs").write_text(f"{sleeper.pid}\n")
        cgroup.kill(str(job))  # no cgroup.kill file (kernel < 5.14): per-pid SIGKILL
        assert sleeper.wait(timeout=5) == -9
    finally:
        sleeper.kill()
        sleeper.wait()


def test_take_over_moves_the_other_processes_to_a_leaf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount, proc = _fake_tree(tmp_path)
    base, _ = cgroup.detect(str(mount), str(proc))
    assert base is not None
    (Path(base) / "cgroup.procs").write_text("1\n77\n99\n")
    monkeypatch.setattr(cgroup, "_emulated", True)
    writes: list[tuple[str, str]] = []
    real_write = cgroup._write

    def record(path: str, value: str) -> None:
        writes.append((os.path.relpath(path, base), value))
        real_write(path, value)

    monkeypatch.setattr(cgroup, "_write", record)
    cgroup.take_over(base, 99)
    # The zygote first, then one write per other pid (as the kernel takes them), and only
    # then the controllers: the delegated cgroup itself holds no process by then.
    assert writes == [("zygote/cgroup.procs", "99"), ("worker/cgroup.procs", "1"),
                      ("worker/cgroup.procs", "77"),
                      ("cgroup.subtree_control", "+memory +pids +cpu")]
