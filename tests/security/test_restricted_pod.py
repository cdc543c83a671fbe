"""A restricted Kubernetes pod, emulated: no user or network namespaces (RuntimeDefault
seccomp denies unshare) and no uid switching. The default level still starts there, on
Landlock + seccomp + rlimits, and still contains the attacks."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from executor_worker.sandbox import ZygoteSandbox, build_sandbox
from tests.security.conftest import SET_COMM, Harness, processes_named, settings_for

pytestmark = pytest.mark.security


@pytest.fixture
async def pod(secrets: Path, work_dir: Path) -> AsyncIterator[Harness]:
    sandbox = build_sandbox(settings_for(work_dir, disable_layers="netns,userns,uid,pidns,mountns,ipcns,utsns"))
    assert isinstance(sandbox, ZygoteSandbox)
    await sandbox.start()  # no SANDBOX_ALLOW_DEGRADED needed at the standard level
    try:
        yield Harness(sandbox, sandbox.job_root, secrets)
    finally:
        await sandbox.close()


async def test_layers_are_reported_honestly(pod: Harness) -> None:
    layers = set(pod.sandbox.layers())
    assert not layers & {"netns", "userns", "uid"}
    assert {"seccomp", "landlock-fs", "landlock-scope", "rlimits"} <= layers


async def test_fork_bomb_and_network_and_signals(pod: Harness) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    code = SET_COMM + (
        "import os, socket, signal\n"
        "set_comm('podbomb-sec')\n"
        "for label, fn in [\n"
        "    ('tcp', lambda: socket.create_connection(('127.0.0.1', inputs['port']), 1)),\n"
        "    ('kill-all', lambda: os.kill(-1, signal.SIGKILL)),\n"
        "    ('kill-worker', lambda: os.kill(inputs['worker'], signal.SIGKILL)),\n"
        "    ('shadow', lambda: open('/etc/shadow').read()),\n"
        "]:\n"
        "    try:\n"
        "        fn()\n"
        "        print(label, 'ALLOWED', flush=True)\n"
        "    except OSError:\n"
        "        print(label, 'DENIED', flush=True)\n"
        "n = 0\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        n += 1\n"
    )
    try:
        outcome = await pod.run(code, timeout_s=2.0,
                                inputs={"port": server.getsockname()[1], "worker": os.getpid()})
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()
    assert outcome.status == "timed_out"
    assert "ALLOWED" not in outcome.stdout
    assert outcome.stdout.count("DENIED") == 4, outcome.stdout
    for _ in range(50):
        if not processes_named("podbomb-sec"):
            break
        await asyncio.sleep(0.02)
    assert processes_named("podbomb-sec") == []
    after = await pod.run("print('ok')")
    assert after.stdout == "ok\n"


async def test_the_host_attack_classes_in_a_pod(pod: Harness) -> None:
    """The issue-9 corpus, where neither namespaces nor a uid switch exist: the seccomp
    rules for a shared uid carry it."""
    from tests.security import test_host_and_siblings as corpus

    layers = set(pod.sandbox.layers())
    assert "seccomp-metadata" in layers and not layers & {"pidns", "mountns", "ipcns"}
    await corpus.test_metadata_of_worker_owned_files_cannot_change(pod)
    await corpus.test_limits_and_priority_of_other_processes_cannot_change(pod)
    await corpus.test_sysv_ipc_of_the_host_and_of_other_jobs_is_out_of_reach(pod)
    await corpus.test_inotify_and_fanotify_are_refused(pod)
    host_dir = Path(tempfile.mkdtemp(prefix="llmexec-pod-"))
    try:
        await corpus.test_unix_datagrams_to_a_host_path_socket_never_arrive(pod, host_dir)
    finally:
        os.rmdir(host_dir)


@pytest.mark.parametrize("hang", [True, False])
async def test_a_job_removing_its_own_directory_in_a_pod(pod: Harness, hang: bool) -> None:
    """Same uid as the worker, no namespaces: emptying (and trying to remove) the job's
    own directory still leaves the kill, the result and the clean-up intact."""
    from tests.security import test_supervisor

    await test_supervisor.test_a_job_that_removes_its_own_directory_is_still_killed(pod, hang)
