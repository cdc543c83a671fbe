"""Bad input at the CLI: every line of --requests answered exactly once, value errors in one
line naming the option; never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def llmexec(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmexec", *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


HOSTILE_LINES = [
    b"\xff\xfe not even text",
    b"{broken",
    json.dumps({"code": "print(1)", "request_id": "r" * 200}).encode(),
    json.dumps({"code": "print(1)", "request_id": "a\x01b"}).encode(),
    b'{"code": "print(1)", "inputs": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    b'{"code": "print(1)", "inputs": ' + b"[" * 100 + b"]" * 100 + b"}",
    b'{"code": "print(1)", "inputs": 1' + b"0" * 5000 + b"}",
    b'{"code": "\\ud800"}',
    b'{"kind": ["request"], "code": "x"}',
    b"[1, 2, 3]",
    b'{"prompt": ""}',
]


def test_a_file_of_only_unreadable_lines_answers_each_line_once(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(HOSTILE_LINES) + b"\n")
    proc = llmexec("run", "--requests", str(path), "--json")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["request_id"] for r in results] == [f"line-{n}" for n in range(1, len(HOSTILE_LINES) + 1)]
    assert all(r["status"] == "rejected" for r in results)
    reasons = [r["error"]["message"] for r in results]
    assert all(reason.startswith(f"line {n}: ") for n, reason in enumerate(reasons, start=1))
    assert "request_id" in reasons[2] and "128" in reasons[2]
    assert "request_id" in reasons[3] and "pattern" in reasons[3]
    assert reasons[4].startswith("line 5: inputs[0]") and "nested deeper" in reasons[4]
    assert "inputs" in reasons[5] and "nested deeper" in reasons[5]
    assert "code" in reasons[7] and "Unicode" in reasons[7]
    assert "kind" in reasons[8]


def test_duplicate_ids_are_answered_once_each_and_the_good_lines_run(tmp_path: Path) -> None:
    path = tmp_path / "dupes.jsonl"
    path.write_text("\n".join([json.dumps({"request_id": "same", "code": "print(1)"}),
                               json.dumps({"request_id": "same", "code": "print(2)"}),
                               "", "{nope"]) + "\n")
    proc = llmexec("run", "--requests", str(path), "--json")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    by_id = {r["request_id"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(by_id) == {"same", "line-2", "line-4"}
    assert by_id["same"]["status"] == "succeeded" and by_id["same"]["stdout"] == "1\n"
    assert "already used on line 1" in by_id["line-2"]["error"]["message"]


@pytest.mark.parametrize(("args", "option"), [
    (["--timeout", "-5"], "--timeout"),
    (["--timeout", "soon"], "--timeout"),
    (["--memory-mb", "1"], "--memory-mb"),
    (["--request-id", "x" * 300], "--request-id"),
    (["--inputs", "[" * 5000 + "]" * 5000], "--inputs"),
])
def test_cli_value_errors_are_one_line_naming_the_option(args: list[str], option: str) -> None:
    proc = llmexec("run", "--code", "print(1)", *args)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert option in line and "Traceback" not in line
