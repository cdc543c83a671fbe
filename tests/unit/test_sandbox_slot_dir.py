"""A slot's directory serves job after job (executor_worker/sandbox/jobdir.py): between
jobs it is emptied but for our own job files, which are rewritten in place for the next
job. Whatever a job could have put in their way (a link to a file of the worker's, a
symlink, a fifo, a file of another owner, a directory) is removed, never written through."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from executor_worker.sandbox.api import SandboxJob
from executor_worker.sandbox.jobdir import (
    SLOT_DIR_MODE,
    empty_job_dir,
    open_slot_dir,
    remove_plain_job_dir,
    slot_dir,
)
from executor_worker.sandbox.jobfiles import write_job_files

ROOT = os.geteuid() == 0


def job(code: str, inputs: dict[str, object] | None = None) -> SandboxJob:
    return SandboxJob(job_id="j", code=code, inputs=inputs or {}, timeout_s=1)


@pytest.fixture
def slot(tmp_path: Path) -> Path:
    return slot_dir(tmp_path, 0)


def test_the_job_files_are_rewritten_in_place_shorter_or_longer(slot: Path) -> None:
    write_job_files(slot, job("print('a fairly long first program')", {"n": 1}), rewrite=True)
    inode = os.stat(slot / "main.py").st_ino
    write_job_files(slot, job("print(2)", {}), rewrite=True)
    assert (slot / "main.py").read_text() == "print(2)"
    assert (slot / "inputs.json").read_text() == "{}"
    assert os.stat(slot / "main.py").st_ino == inode  # no inode allocated per job
    write_job_files(slot, job("x = 1\n" * 100, {"n": [1, 2, 3]}), rewrite=True)
    assert (slot / "main.py").read_text() == "x = 1\n" * 100
    assert (slot / "inputs.json").read_text() == '{"n": [1, 2, 3]}'


def test_emptying_keeps_only_our_own_job_files(slot: Path) -> None:
    write_job_files(slot, job("print(1)"), rewrite=True)
    (slot / "artifact.txt").write_text("left")
    (slot / "deep" / "deeper").mkdir(parents=True)
    (slot / "deep" / "deeper" / "f").write_text("left")
    os.chmod(slot / "deep" / "deeper", 0)
    os.mkfifo(slot / "fifo")
    os.symlink("/etc/passwd", slot / "link")
    assert not remove_plain_job_dir(slot, keep=True)  # a directory: the thorough path
    empty_job_dir(slot)
    assert sorted(p.name for p in slot.iterdir()) == ["inputs.json", "main.py"]
    (slot / "artifact.txt").write_text("left")
    assert remove_plain_job_dir(slot, keep=True)  # plain files only: the quick path
    assert sorted(p.name for p in slot.iterdir()) == ["inputs.json", "main.py"]


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "fifo", "directory", "foreign"])
def test_nothing_in_the_place_of_a_job_file_is_written_through(
    slot: Path, tmp_path: Path, plant: str
) -> None:
    """What sits where main.py goes, were a kernel or a mistake to let a job put it there:
    refused, left alone, and removed by the emptying; the next files are ours again."""
    worker_file = tmp_path / "worker-secret"
    worker_file.write_text("the worker's")
    target = slot / "main.py"
    if plant == "symlink":
        os.symlink(worker_file, target)
    elif plant == "hardlink":
        os.link(worker_file, target)
    elif plant == "fifo":
        os.mkfifo(target)
    elif plant == "directory":
        target.mkdir()
    else:
        if not ROOT:
            pytest.skip("only root can give a file to another owner")
        target.write_text("someone else's")
        os.chown(target, 65534, 65534)
    with pytest.raises(OSError):
        write_job_files(slot, job("print('through')"), rewrite=True)
    assert worker_file.read_text() == "the worker's"
    empty_job_dir(slot)
    assert not os.path.lexists(target) or os.stat(target).st_uid == os.geteuid()
    write_job_files(slot, job("print('fresh')"), rewrite=True)
    st = os.lstat(target)
    assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1
    assert target.read_text() == "print('fresh')"
    assert worker_file.read_text() == "the worker's"


@pytest.mark.skipif(not ROOT, reason="a slot's group is given by root")
def test_a_slot_directory_is_roots_sticky_and_the_slots_group(slot: Path) -> None:
    open_slot_dir(slot, 60123)
    st = os.lstat(slot)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 60123, SLOT_DIR_MODE)
    os.chmod(slot, 0o777)
    os.setxattr(slot, "user.planted", b"x")
    open_slot_dir(slot, 60123)  # undone
    assert stat.S_IMODE(os.lstat(slot).st_mode) == SLOT_DIR_MODE
    assert os.listxattr(slot) == []
