"""Policy checks on code before it is routed: size, syntax, imports, disallowed constructs,
and a compile.

This is a POLICY check, not the security boundary. It gives fast, precise feedback (to users
and to the model) about code that cannot work here: a module the sandbox does not have, a
network call in a sandbox without network, a subprocess in a sandbox that denies exec. It is
easy to evade (``getattr(__import__("o" + "s"), "system")``) and does not try to be hard to
evade: hostile code that passes it is contained by the sandbox (namespaces, seccomp,
Landlock, rlimits), which is the boundary.

Rules in a report: ``size``, ``syntax``, ``compile``, ``import``, ``network``, ``process``,
``stdin``. Each issue names its line when there is one.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass

from schemas import ValidationIssue, ValidationReport

#: What the sandbox does not offer, as (rule, why). Keys are dotted module names (a prefix
#: match: ``urllib.request`` also covers ``urllib.request.urlopen``) or dotted callables.
#: The system prompt lists the same table, so the model is told what the check enforces.
DISALLOWED: dict[str, tuple[str, str]] = {
    **{m: ("network", "there is no network in the sandbox") for m in (
        "socket", "ssl", "socketserver", "http.client", "http.server", "urllib.request",
        "ftplib", "smtplib", "poplib", "imaplib", "xmlrpc", "webbrowser",
        "requests", "httpx", "aiohttp", "urllib3", "websockets", "paramiko",
    )},
    **{m: ("process", "running other programs is denied (no exec) in the sandbox") for m in (
        "subprocess", "pty", "os.system", "os.popen", "os.execl", "os.execle", "os.execlp",
        "os.execlpe", "os.execv", "os.execve", "os.execvp", "os.execvpe", "os.spawnl",
        "os.spawnle", "os.spawnlp", "os.spawnlpe", "os.spawnv", "os.spawnve", "os.spawnvp",
        "os.spawnvpe", "os.posix_spawn", "os.posix_spawnp",
    )},
    "input": ("stdin", "stdin is empty; read the `inputs` variable or inputs.json instead"),
    "sys.stdin": ("stdin", "stdin is empty; read the `inputs` variable or inputs.json instead"),
}

_IMPORT_GUARDS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


@dataclass(frozen=True)
class Policy:
    """What code may use. ``allow_heavy``: the request may run heavy, so modules only the
    heavy image has are allowed (routing then sends the code there)."""

    max_bytes: int
    light_packages: frozenset[str]
    heavy_packages: frozenset[str]
    allow_heavy: bool = True

    def available(self, top: str) -> bool:
        return (top in sys.stdlib_module_names or top in self.light_packages
                or (self.allow_heavy and top in self.heavy_packages))


@dataclass(frozen=True)
class CodeCheck:
    report: ValidationReport
    #: Top-level third-party modules the code imports (standard library excluded).
    packages: frozenset[str] = frozenset()

    def heavy_only(self, policy: Policy) -> frozenset[str]:
        return frozenset(p for p in self.packages
                         if p in policy.heavy_packages and p not in policy.light_packages)


def validate_code(code: str, policy: Policy) -> CodeCheck:
    issues: list[ValidationIssue] = []
    size = len(code.encode())
    if size > policy.max_bytes:
        issues.append(ValidationIssue(rule="size",
                                      message=f"code is {size} bytes, limit {policy.max_bytes}"))
    if "\x00" in code:
        issues.append(ValidationIssue(rule="syntax", message="code contains a NUL byte"))
        return CodeCheck(ValidationReport(ok=False, issues=issues))
    try:
        tree = ast.parse(code, filename="main.py")
    except SyntaxError as exc:
        issues.append(ValidationIssue(rule="syntax", message=exc.msg, line=exc.lineno))
        return CodeCheck(ValidationReport(ok=False, issues=issues))
    except (ValueError, RecursionError, MemoryError) as exc:
        issues.append(ValidationIssue(rule="syntax", message=str(exc) or type(exc).__name__))
        return CodeCheck(ValidationReport(ok=False, issues=issues))
    visitor = _Visitor(policy)
    visitor.visit(tree)
    issues.extend(visitor.issues)
    try:
        # The compiler catches what the parser lets through (``return`` outside a function,
        # ``nonlocal`` at module level, ...).
        compile(tree, "main.py", "exec", dont_inherit=True)
    except SyntaxError as exc:
        issues.append(ValidationIssue(rule="compile", message=exc.msg, line=exc.lineno))
    except (ValueError, RecursionError, MemoryError) as exc:
        issues.append(ValidationIssue(rule="compile", message=str(exc) or type(exc).__name__))
    return CodeCheck(ValidationReport(ok=not issues, issues=issues),
                     frozenset(visitor.packages))


def describe(report: ValidationReport) -> str:
    return "; ".join(
        f"{i.rule}" + (f" (line {i.line})" if i.line else "") + f": {i.message}"
        for i in report.issues
    )


class _Visitor(ast.NodeVisitor):
    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._guarded = 0  # inside ``try: import x / except ImportError``: optional imports
        self._aliases: dict[str, str] = {}  # local name -> dotted name it was imported as
        self.issues: list[ValidationIssue] = []
        self.packages: set[str] = set()

    def visit_Try(self, node: ast.Try) -> None:
        guarded = any(_catches_import_error(h) for h in node.handlers)
        self._guarded += guarded
        for stmt in node.body:
            self.visit(stmt)
        self._guarded -= guarded
        for part in (*node.handlers, *node.orelse, *node.finalbody):
            self.visit(part)

    visit_TryStar = visit_Try  # type: ignore[assignment]

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._module(alias.name, node.lineno)
            local = alias.asname or alias.name.split(".")[0]
            self._aliases[local] = alias.name if alias.asname else local

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            self._issue("import", "relative imports have nothing to import from: the "
                        "program is a single file", node.lineno)
            return
        self._module(node.module, node.lineno)
        for alias in node.names:
            dotted = f"{node.module}.{alias.name}"
            self._disallowed(dotted, node.lineno)
            self._aliases[alias.asname or alias.name] = dotted

    def visit_Call(self, node: ast.Call) -> None:
        name = self._dotted(node.func)
        if name is not None:
            self._disallowed(name, node.lineno)
            if name in ("__import__", "importlib.import_module") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    self._module(first.value, node.lineno)
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = self._dotted(node)
        if name == "sys.stdin":
            self._disallowed(name, node.lineno)
        self.generic_visit(node)

    def _module(self, dotted: str, line: int) -> None:
        top = dotted.split(".")[0]
        if self._disallowed(dotted, line):
            return
        if top not in sys.stdlib_module_names:
            self.packages.add(top)
        if self._guarded or self._policy.available(top):
            return
        where = ("only in the heavy image, but this request runs light"
                 if top in self._policy.heavy_packages else "not installed in the sandbox")
        self._issue("import", f"module {top!r} is {where}; available beyond the standard "
                    f"library: {', '.join(sorted(self._available())) or 'nothing'}", line)

    def _available(self) -> set[str]:
        p = self._policy
        return set(p.light_packages) | (set(p.heavy_packages) if p.allow_heavy else set())

    def _disallowed(self, dotted: str, line: int) -> bool:
        parts = dotted.split(".")
        for i in range(len(parts), 0, -1):
            hit = DISALLOWED.get(".".join(parts[:i]))
            if hit is not None:
                rule, why = hit
                self._issue(rule, f"{dotted}: {why}", line)
                return True
        return False

    def _dotted(self, node: ast.expr) -> str | None:
        """``os.path.join`` -> "os.path.join", resolving names bound by imports."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        parts.append(self._aliases.get(node.id, node.id))
        return ".".join(reversed(parts))

    def _issue(self, rule: str, message: str, line: int | None) -> None:
        # One issue per rule and line: ``sys.stdin.read()`` is one mistake, not three.
        if not any(i.rule == rule and i.line == line for i in self.issues):
            self.issues.append(ValidationIssue(rule=rule, message=message, line=line))


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(t, ast.Name) and t.id in _IMPORT_GUARDS for t in types)
