"""Find the real interpreter binary behind ``sys.executable``.

A pyenv shim is a shell script that costs ~55 ms per start and consults the environment;
both the zygote and the benchmark's baseline must use the real ELF binary.
"""

from __future__ import annotations

import os
import sys


def is_elf(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def real_python(executable: str | None = None) -> str:
    """The ELF interpreter for ``executable`` (default: this one), symlinks resolved."""
    candidate = os.path.realpath(executable or sys.executable)
    if is_elf(candidate):
        return candidate
    # A shim or wrapper script: the running interpreter knows its own prefix.
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for prefix in (sys.exec_prefix, sys.base_exec_prefix):
        guess = os.path.realpath(os.path.join(prefix, "bin", version))
        if is_elf(guess):
            return guess
    raise RuntimeError(f"cannot find the real interpreter behind {executable or sys.executable}")
