"""The zygote's records (executor_worker/sandbox/records.py) behave as the dataclasses that
type checkers see them as, for what the sandbox relies on."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from executor_worker.sandbox.records import field, record, replace


@record(frozen=True)
class Frozen:
    a: int
    b: str = "x"
    c: tuple[int, ...] = ()


@record
class Mutable:
    a: int = 0
    notes: dict[str, str] = field(default_factory=dict)


def test_fields_in_order_positional_and_keyword() -> None:
    assert Frozen(1) == Frozen(a=1, b="x", c=())
    assert Frozen(1, "y").b == "y"
    assert repr(Frozen(2, c=(3,))) == "Frozen(a=2, b='x', c=(3,))"


def test_construction_errors_are_type_errors() -> None:
    with pytest.raises(TypeError, match="missing argument 'a'"):
        Frozen()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected argument 'd'"):
        Frozen(1, d=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values"):
        Frozen(1, a=2)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        Frozen(1, "b", (), 4)  # type: ignore[call-arg]


def test_frozen_records_refuse_changes_and_hash_by_value() -> None:
    one = Frozen(1)
    with pytest.raises(AttributeError):
        one.a = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del one.a
    assert hash(one) == hash(Frozen(1))
    assert {one, Frozen(1)} == {one}
    assert one != Frozen(2)
    other: object = ("not", "a", "record")
    assert one != other


def test_factories_give_each_record_its_own_value() -> None:
    first, second = Mutable(), Mutable()
    first.notes["k"] = "v"
    assert second.notes == {}
    first.a = 5  # mutable records take assignments
    assert first.a == 5
    with pytest.raises(TypeError):
        hash(first)


def test_replace_keeps_the_other_fields() -> None:
    changed = replace(Frozen(1, "y", (2,)), b="z")
    assert changed == Frozen(1, "z", (2,))


def test_the_zygote_modules_import_neither_dataclasses_nor_typing() -> None:
    """What this module is for: a zygote started as the supervisor starts it (-I -S, stub
    packages) has none of the heavy modules in its address space."""
    import executor_worker.sandbox as pkg
    from executor_worker.sandbox import zygote

    code = zygote._LAUNCHER.replace(
        "zygote_main.main(sys.argv)\n",
        "print(sorted({'dataclasses', 'typing', 'inspect', 'ast', 'traceback', 'threading',\n"
        "              'random', 'pyseccomp'} & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code, "{}", "0",
                          pkg.__path__[0]], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", textwrap.shorten(out.stdout + out.stderr, 500)
