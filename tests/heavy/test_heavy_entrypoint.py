"""The heavy-executor entrypoint: files in, one result record out, as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from executor_worker.heavy.contract import MARKER, parse_record, write_job_dir
from executor_worker.heavy.render import load_template
from executor_worker.sandbox import SandboxJob, SandboxSettings

ROOT = Path(__file__).resolve().parents[2]


def run(job_dir: Path, tmp_path: Path, **sandbox: object) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "sandbox.json"
    config.write_text(SandboxSettings(work_dir=tmp_path / "work", **sandbox).model_dump_json())
    return subprocess.run(
        [sys.executable, "-m", "executor_worker.heavy_main", "--job-dir", str(job_dir),
         "--sandbox-config", str(config)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )


def job_dir(tmp_path: Path, code: str, inputs: object = None, timeout_s: float = 10) -> Path:
    d = tmp_path / "job"
    d.mkdir()
    write_job_dir(d, SandboxJob(job_id="j1", code=code, inputs=inputs, timeout_s=timeout_s))
    return d


def test_runs_the_code_and_prints_one_record_last(tmp_path: Path) -> None:
    proc = run(job_dir(tmp_path, "print(inputs['a'] * 2)", {"a": 21}), tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[-1].startswith(MARKER)  # stdout carries only the record
    outcome = parse_record(proc.stdout)
    assert outcome is not None and outcome.status == "succeeded" and outcome.stdout == "42\n"
    assert "rlimits" in outcome.layers


def test_failing_code_is_a_result_not_a_failed_pod(tmp_path: Path) -> None:
    proc = run(job_dir(tmp_path, "print('x', flush=True)\nraise SystemExit(4)"), tmp_path)
    assert proc.returncode == 0
    outcome = parse_record(proc.stdout)
    assert outcome is not None and outcome.status == "failed" and outcome.exit_code == 4
    assert outcome.stdout == "x\n"


def test_user_output_cannot_forge_the_record(tmp_path: Path) -> None:
    fake = MARKER + json.dumps({"status": "succeeded"})
    proc = run(job_dir(tmp_path, f"print({fake!r})\nraise SystemExit(1)"), tmp_path)
    outcome = parse_record(proc.stdout)
    assert outcome is not None and outcome.status == "failed"


def test_timeout_inside_the_pod(tmp_path: Path) -> None:
    proc = run(job_dir(tmp_path, "while True: pass", timeout_s=0.5), tmp_path,
               kind="subprocess")
    outcome = parse_record(proc.stdout)
    assert outcome is not None and outcome.status == "timed_out"


def test_unreadable_job_dir_exits_3_with_a_record(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = run(tmp_path / "empty", tmp_path)
    assert proc.returncode == 3
    outcome = parse_record(proc.stdout)
    assert outcome is not None and outcome.reason_code == "bad_job"


def test_runs_with_the_templates_environment_in_an_emulated_restricted_pod(
        tmp_path: Path) -> None:
    """The env of job_templates/heavy-job.yaml (settings from SANDBOX_*), on a host without
    namespaces, uid switching or Landlock: the entrypoint degrades, says so, and still runs."""
    (container,) = load_template()["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    work = tmp_path / "work"
    env.update(SANDBOX_WORK_DIR=str(work / "sandbox"), HOME=str(work), TMPDIR=str(work),
               SANDBOX_DISABLE_LAYERS="netns,userns,uid,landlock-fs,landlock-scope",
               PATH="/usr/bin:/bin", PYTHONPATH=str(ROOT))
    work.mkdir()
    code = "import socket\ntry:\n    socket.socket()\n    print('net')\nexcept OSError:\n    print('no net')"
    proc = subprocess.run(
        [sys.executable, "-m", "executor_worker.heavy_main", "--job-dir",
         str(job_dir(tmp_path, code))], capture_output=True, text=True, timeout=60,
        cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    outcome = parse_record(proc.stdout)
    assert outcome is not None and outcome.stdout == "no net\n"
    assert "seccomp" in outcome.layers and "uid" not in outcome.layers
    assert "sandbox.degraded" in proc.stderr
