"""Policy checks on code before it is routed: syntax, size, and a compile.

This is a policy check that gives fast, precise feedback (to users and to the model); it is
NOT the security boundary. Hostile code that passes it is contained by the sandbox.
"""

from __future__ import annotations

import ast

from schemas import ValidationIssue, ValidationReport


def validate_code(code: str, *, max_bytes: int) -> ValidationReport:
    issues: list[ValidationIssue] = []
    size = len(code.encode())
    if size > max_bytes:
        issues.append(ValidationIssue(rule="size", message=f"code is {size} bytes, limit {max_bytes}"))
    if "\x00" in code:
        issues.append(ValidationIssue(rule="syntax", message="code contains a NUL byte"))
        return ValidationReport(ok=False, issues=issues)
    try:
        tree = ast.parse(code, filename="main.py")
        compile(tree, "main.py", "exec")
    except SyntaxError as exc:
        issues.append(ValidationIssue(rule="syntax", message=exc.msg, line=exc.lineno))
    except (ValueError, RecursionError, MemoryError) as exc:
        issues.append(ValidationIssue(rule="compile", message=str(exc) or type(exc).__name__))
    return ValidationReport(ok=not issues, issues=issues)


def describe(report: ValidationReport) -> str:
    return "; ".join(
        f"{i.rule}" + (f" (line {i.line})" if i.line else "") + f": {i.message}"
        for i in report.issues
    )
