"""Resource attacks: each must end with the right status, a readable reason, and leave the
sandbox healthy and the host free of the job's processes."""

from __future__ import annotations

import asyncio

import pytest

from tests.security.conftest import SET_COMM, Harness, processes_named

pytestmark = pytest.mark.security


async def assert_healthy(harness: Harness) -> None:
    outcome = await harness.run("print('still here')")
    assert outcome.status == "succeeded", outcome
    assert outcome.stdout == "still here\n"


async def assert_gone(comm: str) -> None:
    for _ in range(50):
        if not processes_named(comm):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"processes named {comm!r} survived the job: {processes_named(comm)}")


async def test_fork_bomb_is_contained(harness: Harness) -> None:
    code = SET_COMM + (
        "import os\n"
        "set_comm('forkbomb-sec')\n"
        "while True:\n"
        "    try:\n"
        "        os.fork()\n"
        "    except OSError:\n"
        "        pass\n"
    )
    outcome = await harness.run(code, timeout_s=2.0)
    assert outcome.status == "timed_out", outcome
    assert outcome.reason_code in {"timeout", "cpu_limit"}
    await assert_gone("forkbomb-sec")
    await assert_healthy(harness)


async def test_memory_bomb_reports_memory_limit(harness: Harness) -> None:
    outcome = await harness.run("x = bytearray(10 * 1024**3)", memory_mb=256)
    assert outcome.status == "failed"
    assert outcome.reason_code == "memory_limit"
    assert outcome.reason == "memory limit exceeded (256 MiB)"


async def test_gradual_memory_growth_is_stopped(harness: Harness) -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 * 1024**2))\n"
    outcome = await harness.run(code, memory_mb=128, timeout_s=10)
    assert outcome.status == "failed"
    assert outcome.reason_code == "memory_limit"
    assert "128 MiB" in (outcome.reason or "")


async def test_infinite_loop_hits_the_wall_clock(harness: Harness) -> None:
    outcome = await harness.run("while True:\n    pass\n", timeout_s=1.0)
    assert outcome.status == "timed_out"
    assert outcome.reason_code == "timeout"
    assert outcome.reason == "wall-clock timeout: still running after 1 s"
    assert outcome.duration_ms < 4000


async def test_cpu_burn_in_threads_hits_the_cpu_limit(harness: Harness) -> None:
    code = (
        "import threading\n"
        "def burn():\n"
        "    while True:\n"
        "        pass\n"
        "for _ in range(4):\n"
        "    threading.Thread(target=burn, daemon=True).start()\n"
        "burn()\n"
    )
    outcome = await harness.run(code, timeout_s=6.0, cpu_s=1)
    assert outcome.status == "timed_out", outcome
    assert outcome.reason_code == "cpu_limit"
    assert outcome.reason == "CPU time limit exceeded (1 s)"
    assert outcome.duration_ms < 5000


async def test_huge_file_is_capped(harness: Harness) -> None:
    code = (
        "with open('big.bin', 'wb') as fh:\n"
        "    for _ in range(100):\n"
        "        fh.write(b'x' * 1024 * 1024)\n"
    )
    outcome = await harness.run(code, max_file_bytes=2 * 1024 * 1024, timeout_s=10)
    assert outcome.status == "failed"
    assert outcome.reason_code == "file_size_limit"
    assert outcome.reason == f"file size limit exceeded ({2 * 1024 * 1024} bytes)"
    sizes = [a.size for a in outcome.artifacts if a.name == "big.bin"]
    assert sizes and sizes[0] <= 2 * 1024 * 1024


async def test_huge_stdout_is_truncated_and_killed(harness: Harness) -> None:
    code = "import sys\nwhile True:\n    sys.stdout.write('y' * 65536)\n"
    outcome = await harness.run(code, max_output_bytes=64 * 1024, timeout_s=20)
    assert outcome.status == "failed", outcome
    assert outcome.reason_code == "output_limit"
    assert "output limit exceeded" in (outcome.reason or "")
    assert outcome.stdout_truncated
    assert len(outcome.stdout) < 64 * 1024 + 200
    assert "bytes truncated" in outcome.stdout
    assert outcome.duration_ms < 10_000  # killed for flooding, not by the timeout


async def test_moderate_output_keeps_head_and_tail(harness: Harness) -> None:
    code = "for i in range(20000):\n    print(f'line {i}')\n"
    outcome = await harness.run(code, max_output_bytes=4096)
    assert outcome.status == "succeeded"
    assert outcome.stdout_truncated
    assert outcome.stdout.startswith("line 0\n")
    assert outcome.stdout.endswith("line 19999\n")


async def test_background_process_does_not_outlive_the_job(harness: Harness) -> None:
    code = SET_COMM + (
        "import os, time\n"
        "set_comm('lingerer-sec')\n"
        "if os.fork() == 0:\n"
        "    try:\n"
        "        os.setsid()\n"
        "    except OSError:\n"
        "        pass\n"
        "    if os.fork() == 0:\n"
        "        os.close(1); os.close(2)\n"
        "        time.sleep(60)\n"
        "    os._exit(0)\n"
        "print('parent done')\n"
    )
    outcome = await harness.run(code, timeout_s=5)
    assert outcome.status == "succeeded", outcome
    assert outcome.duration_ms < 3000  # the daemon does not hold the job open
    await assert_gone("lingerer-sec")


@pytest.mark.parametrize(
    ("code", "status", "reason_code", "reason"),
    [
        ("1/0", "failed", "nonzero_exit",
         "exited with status 1: ZeroDivisionError: division by zero"),
        ("import sys\nsys.exit(3)", "failed", "nonzero_exit", "exited with status 3"),
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "failed", "killed",
         "killed by signal 9 (SIGKILL)"),
        ("import ctypes\nctypes.string_at(0)", "failed", "killed",
         "killed by signal 11 (SIGSEGV)"),
        ("raise SystemExit('bye')", "failed", "nonzero_exit", "exited with status 1: bye"),
    ],
)
async def test_failure_modes_carry_status_and_reason(
    harness: Harness, code: str, status: str, reason_code: str, reason: str
) -> None:
    outcome = await harness.run(code)
    assert (outcome.status, outcome.reason_code, outcome.reason) == (status, reason_code, reason)
