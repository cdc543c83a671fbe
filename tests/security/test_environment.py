"""The sandbox runs the interpreter of the environment the worker was installed in.

A venv's ``bin/python`` is a symlink to the base interpreter; exec'd through its resolved
path it would not find ``pyvenv.cfg``, and jobs (and the zygote: pyseccomp) would see none
of the venv's packages. Here a real venv is created and a module is placed *only* in its
site-packages: a light job run by a worker started from that venv must import it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from executor_worker.sandbox.python_binary import is_elf, real_python

pytestmark = pytest.mark.security

REPO = Path(__file__).resolve().parents[2]

#: Run by the venv's interpreter, from the repository (so this checkout's code runs).
WORKER = """
import asyncio, sys
from executor_worker.sandbox import SandboxJob, SandboxSettings, build_sandbox
async def main():
    box = build_sandbox(SandboxSettings(work_dir=sys.argv[1], concurrency=1))
    await box.start()
    try:
        out = await box.run(SandboxJob(job_id="venv", code=sys.argv[2]))
    finally:
        await box.close()
    print("LAYERS", ",".join(out.layers))
    print("STATUS", out.status)
    print(out.stdout, end="")
    print(out.stderr, end="", file=sys.stderr)
asyncio.run(main())
"""


@pytest.fixture(scope="module")
def venv() -> Iterator[tuple[Path, str]]:
    # Outside pytest's 0700 tmp tree: a job uid must be able to reach the venv.
    top = Path(tempfile.mkdtemp(prefix="llmexec-venv-"))
    os.chmod(top, 0o755)
    env_dir = top / "venv"
    # --system-site-packages: the project's dependencies come from the base installation,
    # so no index is needed; --without-pip keeps creation well under a second.
    subprocess.run([real_python(sys.executable), "-m", "venv", "--system-site-packages",
                    "--without-pip", str(env_dir)], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = env_dir / "lib" / version / "site-packages"
    assert site.is_dir(), site
    module = f"llmexec_venv_only_{uuid.uuid4().hex[:8]}"
    (site / f"{module}.py").write_text("VALUE = 'from-the-venv'\n")
    os.chmod(site / f"{module}.py", 0o644)
    yield env_dir, module
    shutil.rmtree(top, ignore_errors=True)


def test_real_python_keeps_the_venv_path(venv: tuple[Path, str]) -> None:
    env_dir, _ = venv
    link = env_dir / "bin" / "python"
    assert link.is_symlink()
    assert real_python(str(link)) == str(link)  # not its target: pyvenv.cfg sits beside it
    assert is_elf(real_python(str(link)))


def test_a_shim_still_leads_to_an_elf_binary(tmp_path: Path) -> None:
    shim = tmp_path / "python"
    shim.write_text("#!/bin/sh\nexec python \"$@\"\n")
    shim.chmod(0o755)
    found = real_python(str(shim))
    assert is_elf(found)
    assert found.startswith(sys.exec_prefix)


def test_a_light_job_imports_a_package_installed_only_in_the_venv(
        venv: tuple[Path, str]) -> None:
    env_dir, module = venv
    code = f"import {module}\nprint({module}.VALUE)\n"
    # The base interpreter does not have it: what the job imports can only come from the venv.
    base = subprocess.run([real_python(sys.executable), "-I", "-c", f"import {module}"],
                          capture_output=True)
    assert base.returncode != 0
    work = Path(tempfile.mkdtemp(prefix="llmexec-venvjobs-"))
    os.chmod(work, 0o711)
    try:
        run = subprocess.run(
            [str(env_dir / "bin" / "python"), "-c", WORKER, str(work / "jobs"), code],
            cwd=REPO, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "STATUS succeeded" in run.stdout, run.stdout + run.stderr[-3000:]
    assert "from-the-venv" in run.stdout
    assert "seccomp" in run.stdout.split("LAYERS ")[1].split()[0]
