"""What each ``SANDBOX_LEVEL`` requires, and the check that refuses a weaker host.

A requirement is a set of alternatives: any one of them satisfies it. ``standard`` asks for
what holds hostile code on any modern Linux host, root or not: the job must be unable to
read or signal the worker (its own uid, or Landlock filesystem rules plus signal scoping)
and must have seccomp (which also denies every socket(), i.e. the network). ``strict`` adds
everything a root VM offers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from executor_worker.sandbox.api import SandboxUnavailable

KNOWN_LAYERS = frozenset({
    "process", "session", "rlimits", "empty-env", "timeout", "output-cap", "zygote",
    "netns", "userns", "uid", "landlock-fs", "landlock-net", "landlock-scope", "seccomp",
    "no-new-privs",
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
    (frozenset({"uid"}), frozenset({"landlock-fs", "landlock-scope"})),
]
_STRICT: list[Requirement] = [
    *_STANDARD,
    *((frozenset({layer}),) for layer in (
        "zygote", "netns", "uid", "landlock-fs", "landlock-net", "landlock-scope",
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
    """Raise SandboxUnavailable unless the layers meet ``level``.

    The minimum (separate process, rlimits, empty environment, timeout) is never waived;
    anything above it may be, but only with ``allow_degraded``. Returns the gaps accepted.
    """
    layers = tuple(layers)
    floor = missing("minimal", layers)
    if floor:
        raise SandboxUnavailable(
            "sandbox cannot provide even the minimum isolation; missing: "
            + _explain(floor, notes)
        )
    gaps = missing(level, layers)
    if gaps and not allow_degraded:
        raise SandboxUnavailable(
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
