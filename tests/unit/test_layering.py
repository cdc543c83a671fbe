"""The import rules of DESIGN.md, checked on the source (not on hope): which package may
import which, which module may import an SDK, and no file circles."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["schemas", "pipeline", "producers", "consumers", "llm_worker", "executor_worker",
            "llmexec"]
#: Who may import whom: each package, and the packages it must never import.
FORBIDDEN = {
    "schemas": ("pipeline", "producers", "consumers", "llm_worker", "executor_worker",
                "llmexec"),
    "pipeline": ("producers", "consumers", "llm_worker", "executor_worker", "llmexec"),
    "producers": ("consumers", "llm_worker", "executor_worker", "llmexec"),
    "consumers": ("producers", "llm_worker", "executor_worker", "llmexec"),
    "llm_worker": ("executor_worker", "llmexec"),
    "executor_worker": ("llm_worker", "llmexec"),
    "llmexec": (),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Absolute module names imported by ``path``, at any depth (relative imports resolved)."""
    found: set[str] = set()
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package.pop()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            # ``from pkg import mod`` imports the module pkg.mod when there is one.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def sources() -> list[tuple[str, Path]]:
    return [(str(p.relative_to(ROOT)), p) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]


def offenders(prefix: str, allowed: tuple[str, ...]) -> list[str]:
    bad = []
    for rel, path in sources():
        if rel.startswith(allowed):
            continue
        if any(m == prefix or m.startswith(prefix + ".") for m in imports_of(path)):
            bad.append(rel)
    return bad


def test_only_the_eventhubs_backend_imports_azure() -> None:
    assert offenders("azure", ("pipeline/bus/eventhubs",)) == []


def test_only_the_llm_adapter_imports_anthropic() -> None:
    assert offenders("anthropic", ("llm_worker/anthropic_client",)) == []


def test_only_the_executor_imports_kubernetes() -> None:
    assert offenders("kubernetes", ("executor_worker/",)) == []


def test_dependencies_point_one_way() -> None:
    assert set(FORBIDDEN) == set(PACKAGES)
    bad = []
    for rel, path in sources():
        top = rel.split("/")[0]
        for mod in imports_of(path):
            if mod.split(".")[0] in FORBIDDEN[top]:
                bad.append(f"{rel} imports {mod}")
    assert bad == []


def find_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    circles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return circles


def test_no_file_circles() -> None:
    """No module reaches itself through the imports of our own modules (TYPE_CHECKING
    imports included: a circle drawn only for the type checker is still a circle)."""
    modules = {module_name(path): path for _, path in sources()}
    graph = {name: {m for m in imports_of(path) if m in modules and m != name}
             for name, path in modules.items()}
    # A package's __init__ re-exporting its modules is not a circle with them.
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(m + ".")}
    assert find_circles(graph) == []


def test_the_circle_check_can_fail() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_circles(graph) == [["a", "b", "c", "a"]]
    assert find_circles({"a": {"b"}, "b": set()}) == []
