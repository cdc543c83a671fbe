"""Landlock via raw syscalls: filesystem, TCP and scope restrictions for one job process.

Standard library only (runs inside the zygote). The ruleset is built while the child still
has its privileges (it must open every allowed path) and enforced after no-new-privs.
"""

from __future__ import annotations

import ctypes
import os
import stat
import struct
from collections.abc import Iterable

from executor_worker.sandbox import linux
from executor_worker.sandbox.records import record

_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

#: Rights that may be granted on a non-directory (the kernel rejects the others there).
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV


def abi_version() -> int:
    """The Landlock ABI the kernel offers, 0 when Landlock is absent or disabled."""
    if not linux.is_x86_64():
        return 0
    result = linux.syscall(linux.SYS_LANDLOCK_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION)
    return max(result, 0)


def fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


@record(frozen=True)
class Policy:
    read_only: tuple[str, ...]
    read_write: tuple[str, ...]
    allow_exec: bool = False
    restrict_net: bool = True  # deny every TCP bind/connect (ABI 4+)
    scope: bool = True  # signals and abstract unix sockets stay inside the job (ABI 6+)


def enforced_layers(abi: int, policy: Policy) -> tuple[str, ...]:
    layers = ["landlock-fs"] if abi >= 1 else []
    if abi >= 4 and policy.restrict_net:
        layers.append("landlock-net")
    if abi >= 6 and policy.scope:
        layers.append("landlock-scope")
    return tuple(layers)


def build_ruleset(abi: int, policy: Policy) -> int:
    """Create and fill a ruleset; returns its fd. Call before dropping privileges.

    More paths can be added later with :func:`allow_read_write` until it is enforced: the
    zygote's children build the read-only part ahead of time, the job directory at dispatch.
    """
    fd = _create_ruleset(abi, policy)
    try:
        _add_paths(fd, policy.read_only, _read_rights(abi, policy))
        allow_read_write(fd, abi, policy.read_write, policy.allow_exec)
    except BaseException:
        os.close(fd)
        raise
    return fd


class HeldRules:
    """The rules of a fixed set of paths, with their descriptors held open: a fresh ruleset
    then costs one create and one add per path, with no lookups (a slot's init holds them
    and builds each job process's ruleset before forking it)."""

    def __init__(self, abi: int, policy: Policy, read_write: Iterable[str]) -> None:
        self._abi = abi
        self._policy = policy
        self._read_only = _hold(policy.read_only, _read_rights(abi, policy))
        self._rw_paths = (*policy.read_write, *read_write)
        self._read_write = _hold(self._rw_paths, _write_rights(abi, policy.allow_exec))

    def reopen_read_write(self) -> None:
        """The read-write paths were mounted anew: hold the new directories."""
        _release(self._read_write)
        self._read_write = _hold(self._rw_paths, _write_rights(self._abi, self._policy.allow_exec))

    def ruleset(self) -> int:
        fd = _create_ruleset(self._abi, self._policy)
        try:
            for path, _, rule in (*self._read_only, *self._read_write):
                _add_rule(fd, rule, path)
        except BaseException:
            os.close(fd)
            raise
        return fd


def _create_ruleset(abi: int, policy: Policy) -> int:
    handled_fs = fs_rights(abi)
    handled_net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 and policy.restrict_net else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 and policy.scope else 0
    # The struct grew with the ABI; pass only the fields this kernel knows.
    attr = struct.pack("QQQ", handled_fs, handled_net, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    buf = ctypes.create_string_buffer(attr[:size], size)
    return linux.checked_syscall(
        linux.SYS_LANDLOCK_CREATE_RULESET, "landlock_create_ruleset", buf, ctypes.c_size_t(size), 0
    )


def _read_rights(abi: int, policy: Policy) -> int:
    return (READ_FILE | READ_DIR | (EXECUTE if policy.allow_exec else 0)) & fs_rights(abi)


def _write_rights(abi: int, allow_exec: bool) -> int:
    # Everything but device nodes (and execution unless allowed) beneath the paths.
    write = fs_rights(abi) & ~(MAKE_CHAR | MAKE_BLOCK)
    if not allow_exec:
        write &= ~EXECUTE
    return write


def allow_read_write(ruleset_fd: int, abi: int, paths: Iterable[str], allow_exec: bool) -> None:
    _add_paths(ruleset_fd, paths, _write_rights(abi, allow_exec))


_Held = tuple[str, int, ctypes.Array[ctypes.c_char]]  # path, its O_PATH fd, the rule


def _hold(paths: Iterable[str], rights: int) -> list[_Held]:
    held: list[_Held] = []
    for path in paths:
        try:
            path_fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # a configured path that does not exist here grants nothing
        try:
            is_dir = stat.S_ISDIR(os.fstat(path_fd).st_mode)
        except OSError:
            os.close(path_fd)
            continue
        allowed = rights if is_dir else rights & _FILE_RIGHTS
        held.append((path, path_fd,
                     ctypes.create_string_buffer(struct.pack("=Qi", allowed, path_fd), 12)))
    return held


def _release(held: list[_Held]) -> None:
    for _, path_fd, _ in held:
        os.close(path_fd)


def _add_rule(ruleset_fd: int, rule: ctypes.Array[ctypes.c_char], path: str) -> None:
    # The message is only built on failure: this runs for every path of every job.
    if linux.syscall(linux.SYS_LANDLOCK_ADD_RULE, ruleset_fd, _RULE_PATH_BENEATH, rule, 0) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"landlock_add_rule({path}): {os.strerror(err)}")


def _add_paths(ruleset_fd: int, paths: Iterable[str], rights: int) -> None:
    held = _hold(paths, rights)
    try:
        for path, _, rule in held:
            _add_rule(ruleset_fd, rule, path)
    finally:
        _release(held)


def restrict_self(ruleset_fd: int) -> None:
    """Enforce the ruleset on this thread (the job is single-threaded here); needs NNP."""
    try:
        linux.checked_syscall(
            linux.SYS_LANDLOCK_RESTRICT_SELF, "landlock_restrict_self", ruleset_fd, 0
        )
    finally:
        os.close(ruleset_fd)
