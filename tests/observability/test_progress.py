"""Progress on stderr while commands wait, and the results table on a terminal."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from llmexec.cli.progress import Progress, ResultTable
from schemas import ErrorInfo, ExecutionResult, ResultStatus

ROOT = Path(__file__).resolve().parents[2]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def result(rid: str, ok: bool = True) -> ExecutionResult:
    return ExecutionResult(
        request_id=rid, attempt=1,
        status=ResultStatus.SUCCEEDED if ok else ResultStatus.FAILED,
        stdout="49\n" if ok else "",
        error=None if ok else ErrorInfo(code="nonzero_exit", message="ZeroDivisionError"))


def test_plain_lines_when_not_a_tty_say_done_failed_rate_and_eta() -> None:
    now = [0.0]
    out = io.StringIO()
    with Progress(4, stream=out, interval_s=5, clock=lambda: now[0]) as progress:
        now[0] = 1.0
        progress.add(result("a"))
        now[0] = 6.0
        progress.add(result("b", ok=False))  # 5 s since the last line: one now
        now[0] = 7.0
        progress.add(result("c"))
    lines = out.getvalue().splitlines()
    assert lines == ["results: 2/4 done, 1 failed, 0.3/s, ETA 6s",
                     "results: 3/4 done, 1 failed, 0.4/s, ETA 2s"]


def test_a_live_bar_on_a_tty() -> None:
    out = Tty()
    with Progress(2, stream=out) as progress:
        progress.add(result("a"))
        progress.add(result("b", ok=False))
    text = out.getvalue()
    assert "2/2" in text and "1 failed" in text and "ETA" in text


def test_results_follow_table_on_a_tty() -> None:
    out = Tty()
    table = ResultTable(out)
    table.add(result("req-1"))
    table.add(result("req-2", ok=False))
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())
    lines = [line for line in plain.splitlines() if line.strip()]
    assert lines[0].split()[:4] == ["time", "request", "try", "status"]
    assert "req-1" in lines[1] and "succeeded" in lines[1] and "49" in lines[1]
    assert "req-2" in lines[2] and "failed" in lines[2] and "ZeroDivisionError" in lines[2]


def test_run_requests_reports_progress_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "reqs.jsonl"
    path.write_text("".join(json.dumps({"request_id": f"p{i}", "code": f"print({i})"}) + "\n"
                            for i in range(3)))
    plain = subprocess.run([sys.executable, "-m", "llmexec", "run", "--requests", str(path)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines() == ["0", "1", "2"]  # stdout stays the command's output
    assert plain.stderr.splitlines()[-1].startswith("results: 3/3 done, 0 failed, ")

    # On a terminal (stderr is a pty): the rich bar.
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "llmexec", "run", "--requests", str(path)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=follower, text=True,
                            env={**os.environ, "COLUMNS": "120"})
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.stdout is not None
    proc.stdout.read()
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    os.close(leader)
    tty_text = b"".join(chunks).decode(errors="replace")
    assert "3/3" in tty_text and "0 failed" in tty_text and "ETA" in tty_text
