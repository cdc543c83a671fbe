"""Find out which isolation layers actually work on this host, by trying each one.

Runs inside the zygote at start-up. Every probe forks a throw-away child that applies the
layer for real (a kernel that advertises Landlock may still refuse it in a restricted pod;
``unshare`` may be denied by the runtime's seccomp profile), so what is reported is what
jobs get. Standard library only (plus pyseccomp, loaded lazily).
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterable

from executor_worker.sandbox import cgroup, landlock, linux, namespaces, seccomp_filter
from executor_worker.sandbox.records import record, replace
from executor_worker.sandbox.zygote_child import Plan

#: Layers every zygote child has without any probing (the supervisor adds timeout/output-cap).
BASE_LAYERS = ("process", "session", "rlimits", "empty-env", "zygote")

_SYSTEM_READ_PATHS = (
    "/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/usr/share/zoneinfo",
    "/etc/localtime", "/etc/ld.so.cache", "/dev/null", "/dev/zero", "/dev/urandom",
    "/dev/random", "/sys/devices/system/cpu", "/proc/cpuinfo",
)
_EXEC_PATHS = ("/usr/bin", "/bin", "/usr/local/bin")


@record(frozen=True)
class ProbeConfig:
    work_root: str
    uid_base: int | None
    disabled: frozenset[str]
    allow_exec: bool
    extra_read_paths: tuple[str, ...] = ()
    nproc: int = 64
    tmp_bytes: int = 64 * 1024 * 1024
    #: Where cgroup v2 is mounted and which file says our place in it (tests: a fake tree).
    cgroup_mount: str = cgroup.CGROUP_MOUNT
    cgroup_self: str = "/proc/self/cgroup"


def detect(config: ProbeConfig) -> tuple[Plan, tuple[str, ...]]:
    """The plan for every child and the names of the layers it adds up to."""
    plan = Plan(nproc=config.nproc)
    layers = list(BASE_LAYERS)
    notes = plan.notes

    def usable(layer: str, attempt: Callable[[], None]) -> bool:
        if layer in config.disabled:
            notes[layer] = "disabled by configuration (SANDBOX_DISABLE_LAYERS)"
            return False
        error = _in_child(attempt)
        if error is not None:
            notes[layer] = error
        return error is None

    if not usable("rlimits", _rlimit_probe):
        layers.remove("rlimits")
    # One empty network namespace for the zygote and so all its jobs (lo stays down, so
    # jobs cannot reach each other either): a namespace per job would cost ~0.6 ms to
    # create plus an asynchronous teardown per job. Entered before the remaining probes so
    # they run where the jobs will.
    if usable("netns", _enter_netns_probe):
        _enter_netns()
        plan.netns = True
        layers.append("netns")
    plan.ns = _plan_namespaces(config, notes)
    layers += plan.ns.layers()
    if config.uid_base is not None and os.geteuid() == 0:
        if plan.ns.mount:
            # A private home (/root is 0700) hides the interpreter from job uids: reveal
            # what they must read inside their mount namespace; host modes stay as they are.
            plan.ns = replace(plan.ns, veils=namespaces.veils_for(plan.ns.keep))
        if usable("uid", lambda: _uid_probe(config, plan.ns)):
            plan.uid_base = config.uid_base
            layers.append("uid")
    elif "uid" not in config.disabled:
        notes["uid"] = "worker is not root (or SANDBOX_UID_BASE unset): jobs keep its uid"
    # Without a uid of its own, a job gets a user namespace: it counts RLIMIT_NPROC per job
    # and leaves the job no capabilities that reach outside its namespace.
    if plan.uid_base is None and usable("userns", _userns_probe):
        plan.userns = True
        layers.append("userns")
    if usable("no-new-privs", linux.set_no_new_privs):
        layers.append("no-new-privs")
        _plan_landlock(plan, config, layers, usable)
        _plan_seccomp(plan, config, layers, usable)
    if "cgroup" in config.disabled:
        notes["cgroup"] = "disabled by configuration (SANDBOX_DISABLE_LAYERS)"
    else:
        base, why = _take_cgroup(config)
        if base is None:
            notes["cgroup"] = why
        else:
            plan.cgroup_base = base
            layers.append("cgroup")
    return plan, tuple(layers)


_NS_LAYERS = ("pidns", "mountns", "ipcns", "utsns")


def _plan_namespaces(config: ProbeConfig, notes: dict[str, str]) -> namespaces.NamespacePlan:
    """Per-job PID, mount, IPC and UTS namespaces, tried for real as a job would get them."""
    wanted = {name: name not in config.disabled for name in _NS_LAYERS}
    for name in _NS_LAYERS:
        if not wanted[name]:
            notes[name] = "disabled by configuration (SANDBOX_DISABLE_LAYERS)"
    if not wanted["mountns"] and wanted["pidns"]:
        wanted["pidns"] = False  # its /proc needs a mount namespace
        notes["pidns"] = "needs mountns (for the job's own /proc), which is disabled"
    plan = namespaces.NamespacePlan(
        pid=wanted["pidns"], mount=wanted["mountns"], ipc=wanted["ipcns"],
        uts=wanted["utsns"], tmp_bytes=config.tmp_bytes,
        pid_max=config.nproc + 2,
        keep=tuple(dict.fromkeys(os.path.realpath(p) for p in (
            *read_only_paths(config), config.work_root))),
        work_root=os.path.realpath(config.work_root),
    )
    if not plan.layers():
        return plan
    error = _in_child(lambda: _namespace_probe(plan))
    if error is None:
        if plan.mount and not plan.job_tmp():
            notes["tmp"] = ("the interpreter or a read path lives under /tmp, so a job's /tmp "
                            "stays the host's (Landlock keeps it out of reach) instead of "
                            "becoming its own directory")
        return plan
    for name in plan.layers():
        notes[name] = error
    return namespaces.NamespacePlan()


def _namespace_probe(plan: namespaces.NamespacePlan) -> None:
    if plan.pid:
        linux.unshare(linux.CLONE_NEWPID)
    error = _in_child(lambda: _namespace_child(plan))
    if error is not None:
        raise RuntimeError(error)


def _namespace_child(plan: namespaces.NamespacePlan) -> None:
    namespaces.enter(plan)
    if plan.pid:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
        if os.getpid() != 1 or pids != ["1"]:
            raise RuntimeError(f"the new /proc shows pids {pids[:5]} (we are {os.getpid()})")


def _take_cgroup(config: ProbeConfig) -> tuple[str | None, str]:
    """The delegated directory job cgroups go under, with this process (the zygote) moved
    into its leaf and the controllers enabled; or None and why the layer is off."""
    base, why = cgroup.detect(config.cgroup_mount, config.cgroup_self)
    if base is None:
        return None, why
    try:
        cgroup.take_over(base, os.getpid())
    except OSError as exc:
        return None, (f"cgroup {base} is delegated but the zygote cannot take it over "
                      f"(move itself into a leaf, enable {'/'.join(cgroup.NEEDED)}): {exc}")
    return base, ""


def _plan_landlock(plan: Plan, config: ProbeConfig, layers: list[str],
                   usable: Callable[[str, Callable[[], None]], bool]) -> None:
    abi = landlock.abi_version()
    if abi == 0:
        plan.notes["landlock-fs"] = "Landlock is not available in this kernel"
        return
    # read_write stays empty: each job's own directory is added at dispatch, nothing else.
    # The job's own /proc (its PID namespace's) is safe to read; the host's is not.
    own_proc = ("/proc",) if plan.ns.pid and plan.ns.mount else ()
    policy = landlock.Policy(
        read_only=read_only_paths(config) + own_proc, read_write=(),
        allow_exec=config.allow_exec,
        restrict_net="landlock-net" not in config.disabled,
        scope="landlock-scope" not in config.disabled,
    )

    def attempt() -> None:
        linux.set_no_new_privs()
        landlock.restrict_self(landlock.build_ruleset(abi, policy))
        try:
            open("/etc/shadow", "rb").close()
        except (PermissionError, FileNotFoundError):
            return
        raise RuntimeError("Landlock ruleset loaded but /etc/shadow stayed readable")

    if usable("landlock-fs", attempt):
        plan.landlock_abi = abi
        plan.landlock_policy = policy
        layers += landlock.enforced_layers(abi, policy)
    for layer in ("landlock-net", "landlock-scope"):
        if layer in config.disabled:
            plan.notes[layer] = "disabled by configuration (SANDBOX_DISABLE_LAYERS)"


def _plan_seccomp(plan: Plan, config: ProbeConfig, layers: list[str],
                  usable: Callable[[str, Callable[[], None]], bool]) -> None:
    if "seccomp" in config.disabled:
        plan.notes["seccomp"] = "disabled by configuration (SANDBOX_DISABLE_LAYERS)"
        return
    shared_uid = plan.uid_base is None
    try:
        program, split = seccomp_filter.compile_apart(config.allow_exec,
                                                      shared_uid=shared_uid,
                                                      private_ipc=plan.ns.ipc)
    except Exception as exc:  # missing libseccomp, unknown arch, ...
        plan.notes["seccomp"] = f"cannot compile the filter: {exc}"
        return

    def attempt() -> None:
        # As children load it: the ahead part, then the final part.
        linux.set_no_new_privs()
        linux.load_seccomp_bpf(split[0])
        linux.load_seccomp_bpf(split[1])
        try:
            socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        except PermissionError:
            pass
        else:
            raise RuntimeError("seccomp filter loaded but socket() still works")
        try:
            linux.unshare(linux.CLONE_NEWUTS)
        except PermissionError:
            return
        raise RuntimeError("seccomp filters loaded but unshare() still works")

    if usable("seccomp", attempt):
        plan.seccomp_bpf = program
        plan.seccomp_split = split
        layers.append("seccomp")
        if shared_uid:
            layers.append("seccomp-metadata")


def read_only_paths(config: ProbeConfig) -> tuple[str, ...]:
    """The interpreter, its libraries and site-packages, system libraries.

    A candidate that contains the job root is dropped: granting it would let a job read
    every other job's directory.
    """
    candidates: list[str] = [sys.prefix, sys.base_prefix, sys.exec_prefix]
    candidates += [p for p in sys.path if p and os.path.isabs(p)]
    candidates += [*_SYSTEM_READ_PATHS, *config.extra_read_paths]
    if config.allow_exec:
        candidates += _EXEC_PATHS
    root = os.path.realpath(config.work_root)
    real = {os.path.realpath(path) for path in candidates}
    chosen = sorted(path for path in real if os.path.exists(path)
                    and not _beneath(root, path))  # never an ancestor of the job root
    # A path beneath another chosen one adds nothing and costs a rule per job.
    return tuple(path for path in chosen
                 if not any(_beneath(path, other) for other in chosen if other != path))


def _beneath(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor.rstrip("/") + "/")


def _rlimit_probe() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


def _userns_probe() -> None:
    linux.unshare(linux.CLONE_NEWUSER)  # as jobs do it: without id maps
    linux.drop_capabilities()


def _enter_netns_probe() -> None:
    _enter_netns()
    if socket.if_nameindex() != [(1, "lo")]:
        raise RuntimeError(f"new network namespace has interfaces {socket.if_nameindex()}")


def _enter_netns() -> None:
    """Move this process into a new, empty network namespace (needs a user ns if not root)."""
    if os.geteuid() == 0:
        linux.unshare(linux.CLONE_NEWNET)
        return
    uid, gid = os.getuid(), os.getgid()
    linux.unshare(linux.CLONE_NEWUSER | linux.CLONE_NEWNET)
    linux.write_id_maps(uid, gid)


def _uid_probe(config: ProbeConfig, ns: namespaces.NamespacePlan) -> None:
    assert config.uid_base is not None
    # Where the job would be: its mount namespace with the veils (no /proc, no pid_max: this
    # probe is not in a PID namespace of its own).
    namespaces.enter(replace(ns, pid=False, ipc=False, uts=False))
    uid = config.uid_base
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    # The job's uid must be able to load the interpreter's modules and enter the job root.
    for path in _must_read(config):
        try:
            os.listdir(path) if os.path.isdir(path) else open(path, "rb").close()
        except PermissionError:
            raise RuntimeError(
                f"uid {uid} cannot read {path}: make the interpreter readable by other "
                "users (e.g. install it outside /root or chmod o+x the parent directories)"
            ) from None
    os.stat(config.work_root)


def _must_read(config: ProbeConfig) -> Iterable[str]:
    yield os.path.dirname(os.__file__)
    yield from (p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p))


def _in_child(attempt: Callable[[], None]) -> str | None:
    """Run ``attempt`` in a forked child; None if it worked, else the error text."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            os.close(read_end)
            attempt()
        except BaseException as exc:  # reported to the parent
            os.write(write_end, f"{type(exc).__name__}: {exc}".encode()[:2000])
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        error = fh.read().decode(errors="replace")
    _, wait_status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(wait_status) != 0:
        return error or f"probe child ended with status {os.waitstatus_to_exitcode(wait_status)}"
    return None
