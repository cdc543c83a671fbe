"""The policy check: precise rules and lines, imports against the configured packages."""

from __future__ import annotations

import pytest

from llm_worker.validation import Policy, describe, validate_code

LIGHT = frozenset({"numpy"})
HEAVY = frozenset({"numpy", "pandas"})


def check(code: str, *, allow_heavy: bool = True, max_bytes: int = 10_000):  # type: ignore[no-untyped-def]
    return validate_code(code, Policy(max_bytes=max_bytes, light_packages=LIGHT,
                                      heavy_packages=HEAVY, allow_heavy=allow_heavy))


def rules(code: str, **kw: object) -> list[tuple[str, int | None]]:
    return [(i.rule, i.line) for i in check(code, **kw).report.issues]  # type: ignore[arg-type]


def test_valid_code_passes_and_reports_its_packages() -> None:
    result = check("import json\nimport numpy as np\nprint(json.dumps(np.arange(3).tolist()))")
    assert result.report.ok and result.report.issues == []
    assert result.packages == {"numpy"}
    assert result.heavy_only(Policy(1, LIGHT, HEAVY)) == frozenset()


@pytest.mark.parametrize(("code", "expected"), [
    ("def f(:\n  pass", [("syntax", 1)]),
    ("x = 1\nreturn x", [("compile", 2)]),
    ("a = '\x00'", [("syntax", None)]),
    ("import requests", [("network", 1)]),
    ("from urllib import request", [("network", 1)]),
    ("import urllib.request", [("network", 1)]),
    ("import urllib.parse\nprint(urllib.parse.quote('a b'))", []),
    ("import socket\ns = socket.socket()", [("network", 1), ("network", 2)]),
    ("import os\n\nos.system('ls')", [("process", 3)]),
    ("from os import system as run\nrun('ls')", [("process", 1), ("process", 2)]),
    ("import subprocess", [("process", 1)]),
    ("name = input()", [("stdin", 1)]),
    ("import sys\ndata = sys.stdin.read()", [("stdin", 2)]),
    ("import tensorflow", [("import", 1)]),
    ("from . import sibling", [("import", 1)]),
    ("m = __import__('torch')", [("import", 1)]),
    ("try:\n    import ujson as json\nexcept ImportError:\n    import json", []),
])
def test_rules_and_lines(code: str, expected: list[tuple[str, int | None]]) -> None:
    assert rules(code) == expected


def test_size_limit() -> None:
    result = check("x = 1\n" * 100, max_bytes=50)
    assert [i.rule for i in result.report.issues] == ["size"]
    assert "600 bytes, limit 50" in describe(result.report)


def test_heavy_only_package_is_allowed_when_the_route_may_be_heavy() -> None:
    result = check("import pandas")
    assert result.report.ok
    assert result.heavy_only(Policy(1, LIGHT, HEAVY)) == {"pandas"}


def test_heavy_only_package_is_an_import_error_on_the_light_route() -> None:
    result = check("import pandas", allow_heavy=False)
    assert not result.report.ok
    message = result.report.issues[0].message
    assert "only in the heavy image" in message and "numpy" in message


def test_several_issues_are_all_reported() -> None:
    code = "import requests\nimport os\nos.popen('x')\ninput()\n"
    assert rules(code) == [("network", 1), ("process", 3), ("stdin", 4)]
