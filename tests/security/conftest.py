"""Fixtures for the hostile-code corpus: a real ZygoteSandbox at the default level, with the
worker's secrets planted (environment, memory, a private file) before it is built.

Every outcome is checked for the canaries, whatever the test asserts on top.
"""

from __future__ import annotations

import base64
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from executor_worker.sandbox import (
    SandboxJob,
    SandboxOutcome,
    SandboxSettings,
    ZygoteSandbox,
    build_sandbox,
)
from executor_worker.sandbox.jobdir import remove_job_dir
from executor_worker.sandbox.jobfiles import RESERVED, ours_to_rewrite

CANARY = f"canary-{uuid.uuid4().hex}"
SECRET_ENV = {
    "LLM_API_KEY": CANARY,
    "ANTHROPIC_API_KEY": CANARY + "-anthropic",
    "EVENT_HUB_CONNECTION_STRING": f"Endpoint=sb://x/;SharedAccessKey={CANARY}-eh",
}
#: Kept alive in the worker's heap: /proc/<pid>/mem must not reach it.
WORKER_MEMORY_SECRET = (CANARY + "-in-memory").encode()


@dataclass
class Harness:
    sandbox: ZygoteSandbox
    work_dir: Path
    secret_file: Path

    def left_behind(self) -> list[Path]:
        """What the finished jobs left in the job root: nothing, but for the slots' own
        directories (ZygoteSandbox.slot_dirs), which hold nothing between jobs but our
        own job files, as we wrote them (rewritten for the next job)."""
        kept = self.sandbox.slot_dirs()
        for path in kept:
            for entry in path.iterdir():
                assert entry.name in RESERVED, f"a job left {entry} in its slot's directory"
                assert ours_to_rewrite(entry.lstat()), f"{entry} is not ours as we left it"
        return [path for path in self.work_dir.iterdir() if path not in kept]

    async def run(self, code: str, **job: Any) -> SandboxOutcome:
        job.setdefault("timeout_s", 5.0)
        job.setdefault("memory_mb", 256)
        outcome = await self.sandbox.run(SandboxJob(job_id=uuid.uuid4().hex, code=code, **job))
        assert_no_secrets(outcome)
        assert outcome.layers == self.sandbox.layers()
        return outcome


def assert_no_secrets(outcome: SandboxOutcome) -> None:
    texts = [outcome.stdout, outcome.stderr, outcome.reason or ""]
    for artifact in outcome.artifacts:
        texts.append(artifact.name)
        if artifact.content_b64:
            texts.append(base64.b64decode(artifact.content_b64).decode("latin-1"))
    for text in texts:
        assert CANARY not in text, f"worker secret leaked: {text[:500]!r}"


@pytest.fixture
def work_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: its 0700 parents would stop a job uid from reaching its
    # own directory; 0711 lets it traverse without listing.
    path = Path(tempfile.mkdtemp(prefix="llmexec-sec-"))
    os.chmod(path, 0o711)
    yield path
    remove_job_dir(path)  # what a hostile job or test left: no recursion, never fails


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch, work_dir: Path) -> Iterator[Path]:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    secret_file = work_dir.parent / f"llmexec-secret-{uuid.uuid4().hex}"
    secret_file.write_text(CANARY + "-file")
    os.chmod(secret_file, 0o600)
    yield secret_file
    secret_file.unlink(missing_ok=True)


def settings_for(work_dir: Path, **overrides: Any) -> SandboxSettings:
    values: dict[str, Any] = {"work_dir": work_dir / "jobs", "concurrency": 3}
    values.update(overrides)
    return SandboxSettings(**values)


@pytest.fixture
async def harness(secrets: Path, work_dir: Path) -> AsyncIterator[Harness]:
    sandbox = build_sandbox(settings_for(work_dir))
    assert isinstance(sandbox, ZygoteSandbox)
    await sandbox.start()
    try:
        yield Harness(sandbox, sandbox.job_root, secrets)
    finally:
        await sandbox.close()


def processes_named(comm: str) -> list[int]:
    """Pids whose command name (what a job sets with PR_SET_NAME) is ``comm``."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/comm") as fh:
                if fh.read().strip() == comm:
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


#: Job-side helper: name this process (children inherit it) so the test can find leftovers.
SET_COMM = (
    "import ctypes\n"
    "def set_comm(name):\n"
    "    ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)\n"
)
