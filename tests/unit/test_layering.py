"""The import rules of DESIGN.md, checked on the source (not on hope)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["schemas", "pipeline", "producers", "consumers", "llm_worker", "executor_worker"]


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
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
    rules = {
        "schemas/": ("pipeline", "producers", "consumers", "llm_worker", "executor_worker"),
        "pipeline/": ("producers", "consumers", "llm_worker", "executor_worker"),
        "producers/": ("consumers", "llm_worker", "executor_worker"),
        "consumers/": ("producers", "llm_worker", "executor_worker"),
        "llm_worker/": ("executor_worker",),
        "executor_worker/": ("llm_worker",),
    }
    bad = []
    for rel, path in sources():
        if rel.startswith("pipeline/cli/"):
            continue  # the entry point assembles everything
        for prefix, forbidden in rules.items():
            if rel.startswith(prefix):
                for mod in imports_of(path):
                    if mod.split(".")[0] in forbidden:
                        bad.append(f"{rel} imports {mod}")
    assert bad == []
