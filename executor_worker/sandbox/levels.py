"""What each ``SANDBOX_LEVEL`` requires, and the check that refuses a weaker host.

A requirement is a set of alternatives: any one of them satisfies it. ``standard`` asks for
what holds hostile code on any modern Linux host, root or not: the job must be unable to
read, signal or otherwise change the worker (its own uid, or Landlock filesystem rules plus
signal scoping plus the seccomp rules for a shared uid: no chmod/chown/utime/xattr) and must
have seccomp (which also denies every socket(), i.e. the network, SysV IPC without an IPC
namespace, inotify, and prlimit/setpriority on other processes). ``strict`` adds what a root
VM with cgroup v2 delegation offers: per-job PID/IPC/mount namespaces, a uid of its own and
a cgroup bounding the job's totals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from executor_worker.sandbox.api import SandboxRefused

KNOWN_LAYERS = frozenset({
    "process", "session", "rlimits", "empty-env", "timeout", "output-cap", "zygote",
    "netns", "userns", "uid", "landlock-fs", "landlock-net", "landlock-scope", "seccomp",
    "no-new-privs", "seccomp-metadata", "pidns", "mountns", "ipcns", "utsns", "cgroup",
})

Requirement = tuple[frozenset[str], ...]  # alternatives

_MINIMAL: list[Requirement] = [
    (frozenset({layer}),) for layer in ("process", "rlimits", "empty-env", "timeout")
]
_STANDARD: list[Requirement] = [
    *_MINIMAL,
    (frozenset({"session"}),),
    (frozenset({"output-cap"}),),
    (frozenset({"no-new-privs"}),),
    (frozenset({"seccomp"}),),
    # A job never shares the worker's uid unguarded: a uid of its own, or Landlock's file
    # rules and signal scoping plus the seccomp rules that close what the shared uid opens.
    (frozenset({"uid"}), frozenset({"landlock-fs", "landlock-scope", "seccomp-metadata"})),
]
_STRICT: list[Requirement] = [
    *_STANDARD,
    *((frozenset({layer}),) for layer in (
        "zygote", "netns", "uid", "landlock-fs", "landlock-net", "landlock-scope",
        "pidns", "ipcns", "mountns", "cgroup",
    )),
]
LEVELS: Mapping[str, list[Requirement]] = {
    "minimal": _MINIMAL, "standard": _STANDARD, "strict": _STRICT,
}


def missing(level: str, layers: Iterable[str]) -> list[str]:
    """Human descriptions of the unmet requirements of ``level`` (empty when met)."""
    have = set(layers)
    gaps: list[str] = []
    for alternatives in LEVELS[level]:
        if any(option <= have for option in alternatives):
            continue
        gaps.append(" or ".join("+".join(sorted(option - have)) for option in alternatives))
    return gaps


def check(level: str, layers: Iterable[str], allow_degraded: bool,
          notes: Mapping[str, str]) -> list[str]:
    """Raise SandboxRefused unless the layers meet ``level``.

    The minimum (separate process, rlimits, empty environment, timeout) is never waived;
    anything above it may be, but only with ``allow_degraded``. Returns the gaps accepted.
    """
    layers = tuple(layers)
    floor = missing("minimal", layers)
    if floor:
        raise SandboxRefused(
            "sandbox cannot provide even the minimum isolation; missing: "
            + _explain(floor, notes)
        )
    gaps = missing(level, layers)
    if gaps and not allow_degraded:
        raise SandboxRefused(
            f"SANDBOX_LEVEL={level} needs layers this host cannot provide: "
            + _explain(gaps, notes)
            + ". Set SANDBOX_ALLOW_DEGRADED=true to run with the weaker sandbox "
            + f"(active layers: {', '.join(layers)})"
        )
    return gaps


def _explain(gaps: list[str], notes: Mapping[str, str]) -> str:
    parts = []
    for gap in gaps:
        reasons = [f"{name}: {notes[name]}" for name in gap.replace(" or ", "+").split("+")
                   if name in notes]
        parts.append(gap + (f" ({'; '.join(reasons)})" if reasons else ""))
    return "; ".join(parts)
