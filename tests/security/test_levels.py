"""Honesty: the sandbox refuses a weaker host unless degradation is explicitly allowed,
reports the layers it really has, and still contains attacks when degraded."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from executor_worker.sandbox import (
    SandboxJob,
    SandboxRefused,
    SandboxSettings,
    SandboxUnavailable,
    SubprocessSandbox,
    ZygoteSandbox,
    build_sandbox,
)
from executor_worker.sandbox.levels import missing
from tests.security.conftest import CANARY, Harness, assert_no_secrets, settings_for

pytestmark = pytest.mark.security


@pytest.mark.parametrize(
    ("disabled", "named"),
    [("seccomp", "seccomp"), ("no-new-privs", "no-new-privs"),
     ("uid,landlock-fs", "landlock-fs")],  # either one isolates the job from the worker
)
async def test_missing_required_layer_refuses_to_start(
    work_dir: Path, disabled: str, named: str
) -> None:
    sandbox = build_sandbox(settings_for(work_dir, disable_layers=disabled))
    try:
        with pytest.raises(SandboxRefused, match=named):
            await sandbox.start()
        assert not sandbox.ready()
    finally:
        await sandbox.close()


async def test_degraded_start_needs_explicit_opt_in_and_reports_it(
    work_dir: Path, secrets: Path
) -> None:
    sandbox = build_sandbox(settings_for(work_dir, disable_layers="seccomp,netns,userns",
                                         allow_degraded=True))
    await sandbox.start()
    try:
        layers = sandbox.layers()
        assert "seccomp" not in layers and "netns" not in layers
        assert {"process", "rlimits", "empty-env", "timeout", "landlock-fs"} <= set(layers)
        # Still contained by what is left: Landlock's TCP rules and filesystem rules.
        server = socket.create_server(("127.0.0.1", 0))
        server.setblocking(False)
        code = (
            "import socket\n"
            "try:\n"
            "    socket.create_connection(('127.0.0.1', inputs['port']), timeout=1)\n"
            "    print('CONNECTED')\n"
            "except OSError as exc:\n"
            "    print('BLOCKED', exc)\n"
            "try:\n"
            "    print(open('/etc/shadow').read())\n"
            "except OSError as exc:\n"
            "    print('BLOCKED', exc)\n"
        )
        outcome = await sandbox.run(SandboxJob(job_id="d", code=code,
                                               inputs={"port": server.getsockname()[1]}))
        assert outcome.layers == layers
        assert outcome.stdout.count("BLOCKED") == 2, outcome
        with pytest.raises(BlockingIOError):
            server.accept()
        server.close()
        assert_no_secrets(outcome)
    finally:
        await sandbox.close()


async def test_minimum_is_never_waived(work_dir: Path) -> None:
    sandbox = build_sandbox(settings_for(work_dir, disable_layers="rlimits",
                                         allow_degraded=True, level="minimal"))
    with pytest.raises(SandboxRefused, match="minimum"):
        await sandbox.start()


async def test_strict_level_names_what_this_host_lacks(work_dir: Path) -> None:
    sandbox = build_sandbox(settings_for(work_dir, level="strict"))
    try:
        await sandbox.start()
    except SandboxRefused as exc:
        assert isinstance(sandbox, ZygoteSandbox)
        assert "SANDBOX_LEVEL=strict" in str(exc)
        assert "SANDBOX_ALLOW_DEGRADED" in str(exc)
    else:
        assert not missing("strict", sandbox.layers())
        await sandbox.close()


def test_level_requirements() -> None:
    full = ["process", "session", "rlimits", "empty-env", "timeout", "output-cap", "zygote",
            "netns", "uid", "landlock-fs", "landlock-net", "landlock-scope", "seccomp",
            "no-new-privs", "pidns", "ipcns", "mountns", "utsns", "cgroup"]
    assert missing("strict", full) == []
    unprivileged = [layer for layer in full if layer != "uid"]
    # Sharing the worker's uid needs the seccomp metadata rules to meet standard.
    assert missing("standard", unprivileged) == ["uid or seccomp-metadata"]
    assert missing("standard", [*unprivileged, "seccomp-metadata"]) == []
    assert missing("strict", [*unprivileged, "seccomp-metadata"]) == ["uid"]
    v1_host = [layer for layer in full if layer != "cgroup"]
    assert missing("strict", v1_host) == ["cgroup"]
    no_landlock = [layer for layer in full if not layer.startswith("landlock")]
    assert missing("standard", no_landlock) == []  # the uid stands in for Landlock
    bare = ["process", "rlimits", "empty-env", "timeout"]
    assert missing("minimal", bare) == []
    assert "seccomp" in missing("standard", bare)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_KIND", "subprocess")
    monkeypatch.setenv("SANDBOX_LEVEL", "strict")
    monkeypatch.setenv("SANDBOX_ALLOW_DEGRADED", "true")
    monkeypatch.setenv("SANDBOX_CONCURRENCY", "4")
    monkeypatch.setenv("SANDBOX_PREIMPORT", "numpy, pandas")
    monkeypatch.setenv("SANDBOX_DISABLE_LAYERS", "netns")
    settings = SandboxSettings()
    assert settings.kind == "subprocess" and settings.level == "strict"
    assert settings.allow_degraded and settings.concurrency == 4
    assert settings.preimport_modules == ("numpy", "pandas")
    assert settings.disabled_layers == frozenset({"netns"})
    assert isinstance(build_sandbox(settings), SubprocessSandbox)
    monkeypatch.setenv("SANDBOX_DISABLE_LAYERS", "nonsense")
    with pytest.raises(ValueError, match="unknown layer"):
        SandboxSettings()


async def test_subprocess_baseline_still_works(work_dir: Path, secrets: Path) -> None:
    sandbox = build_sandbox(settings_for(work_dir, kind="subprocess"))
    await sandbox.start()
    outcome = await sandbox.run(SandboxJob(
        job_id="s", code="import os\nprint(inputs['x'], dict(os.environ))", inputs={"x": 7}))
    await sandbox.close()
    assert outcome.status == "succeeded"
    assert outcome.stdout.startswith("7 ")
    assert CANARY not in outcome.stdout
    assert outcome.layers == sandbox.layers()


async def test_zygote_restarts_after_it_dies(work_dir: Path) -> None:
    sandbox = build_sandbox(settings_for(work_dir))
    assert isinstance(sandbox, ZygoteSandbox)
    await sandbox.start()
    try:
        zygote_pid = sandbox._proc.pid if sandbox._proc else 0
        os.kill(zygote_pid, 9)
        outcome = None
        for _ in range(3):
            try:
                outcome = await sandbox.run(SandboxJob(job_id="r", code="print(5)"))
                break
            except SandboxUnavailable:
                continue  # the loss surfaces as a transient error, then a new zygote
        assert outcome is not None and outcome.stdout == "5\n"
    finally:
        await sandbox.close()


async def test_a_zygote_lost_mid_job_leaves_every_slot_clean(secrets: Path, work_dir: Path) -> None:
    """The zygote dies while a job that wrote to its directory runs: that job fails, and
    the new zygote's jobs, in every slot (a slot may keep its directory), find nothing of
    it; between jobs the slots' directories hold our files only."""
    sandbox = build_sandbox(settings_for(work_dir, concurrency=1))
    assert isinstance(sandbox, ZygoteSandbox)
    await sandbox.start()
    try:
        running = asyncio.ensure_future(sandbox.run(SandboxJob(
            job_id="long", timeout_s=20,
            code="open('left-behind', 'w').write('x')\nprint('wrote', flush=True)\n"
                 "import time\ntime.sleep(30)")))
        await asyncio.sleep(1.0)
        assert sandbox.zygote_pid is not None
        os.kill(sandbox.zygote_pid, 9)
        with pytest.raises(SandboxUnavailable):
            await running
        listings = []
        for _ in range(8):
            try:
                outcome = await sandbox.run(SandboxJob(
                    job_id="after", code="import os\nprint(sorted(os.listdir('.')))"))
            except SandboxUnavailable:
                continue  # the loss surfaces as a transient error, then a new zygote
            listings.append(outcome.stdout)
        assert len(listings) >= 4, listings  # both slots, twice
        assert set(listings) == {"['inputs.json', 'main.py']\n"}, listings
        await sandbox.settle()
        assert Harness(sandbox, sandbox.job_root, secrets).left_behind() == []
    finally:
        await sandbox.close()


async def test_preimported_numpy_is_usable_and_memory_still_capped(work_dir: Path) -> None:
    pytest.importorskip("numpy")
    sandbox = build_sandbox(settings_for(work_dir, preimport="numpy,not_a_module"))
    await sandbox.start()
    try:
        ok = await sandbox.run(SandboxJob(job_id="n", memory_mb=128, code=(
            "import numpy as np\nprint(int(np.arange(10).sum()))")))
        assert ok.stdout == "45\n", ok
        big = await sandbox.run(SandboxJob(job_id="m", memory_mb=128, code=(
            "import numpy as np\nx = np.ones(100_000_000)")))
        assert (big.status, big.reason_code) == ("failed", "memory_limit")
    finally:
        await sandbox.close()


async def test_directories_of_dead_instances_are_swept_at_start(work_dir: Path) -> None:
    jobs = work_dir / "jobs"
    host = socket.gethostname()
    dead = jobs / f"sbx.{host}.999999999.deadbeef" / "job-left"  # no such pid
    live = jobs / f"sbx.{host}.{os.getppid()}.cafecafe" / "job-running"
    other_host = jobs / "sbx.some-other-pod.999999999.deadbeef" / "job-running"
    for path in (dead, live, other_host):
        path.mkdir(parents=True)
        (path / "inputs.json").write_text("{}")
    sandbox = build_sandbox(settings_for(work_dir))
    assert isinstance(sandbox, ZygoteSandbox)
    await sandbox.start()
    try:
        assert not dead.parent.exists()
        assert live.exists() and other_host.exists()
        assert sandbox.job_root.is_dir()
    finally:
        await sandbox.close()
    assert not sandbox.job_root.exists()


async def test_work_dir_planted_by_someone_else_is_refused(work_dir: Path) -> None:
    target = work_dir / "elsewhere"
    target.mkdir()
    planted = work_dir / "jobs"
    planted.symlink_to(target)  # e.g. another local user racing us in a shared /tmp
    sandbox = build_sandbox(settings_for(work_dir))
    with pytest.raises(SandboxRefused, match="SANDBOX_WORK_DIR"):
        await sandbox.start()
    await sandbox.close()
