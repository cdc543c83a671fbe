"""Find the interpreter the sandbox must exec: the one of the environment we run in.

Two traps. A pyenv shim is a shell script that costs ~55 ms per start and consults the
environment, so the sandbox needs the ELF binary behind it. A virtual environment's
``bin/python`` is a *symlink* to the base interpreter, and the interpreter finds the venv
(``pyvenv.cfg``, hence its site-packages) from the path it was exec'd by: resolving the link
would run the base interpreter without any of the venv's packages. So the path is kept as
it is whenever it already leads to an ELF binary, and made absolute, never resolved.
"""

from __future__ import annotations

import os
import sys


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as fh:  # follows symlinks: what matters is what gets exec'd
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def real_python(executable: str | None = None) -> str:
    """An ELF interpreter path for ``executable`` (default: this one) that keeps its
    environment: a venv's own ``bin/python`` stays as it is (not its symlink target)."""
    candidate = os.path.abspath(executable or sys.executable)
    if is_elf(candidate):
        return candidate
    # A shim or wrapper script: the running interpreter knows its own prefix. The venv's
    # prefix first (sys.exec_prefix), so a shim in front of a venv still gets the venv.
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for prefix in dict.fromkeys((sys.exec_prefix, sys.base_exec_prefix)):
        for name in (version, "python3", "python"):
            guess = os.path.join(prefix, "bin", name)
            if is_elf(guess):
                return guess
    raise RuntimeError(f"cannot find the real interpreter behind {executable or sys.executable}")

