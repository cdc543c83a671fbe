"""Plain records for the modules the zygote imports: ``record``, ``field`` and ``replace``.

Type checkers see :mod:`dataclasses` (same names, same meaning). At run time these are a
few lines of our own: :mod:`dataclasses` imports ``inspect``, ``ast``, ``dis`` and
``tokenize``, ~1.5 MB of the zygote's address space, which every job process pays for twice
(copied page tables at its fork, unmapped pages at its exit; ~0.1 ms per MB here).

What is supported is what the sandbox uses: fields in annotation order, defaults and
``field(default_factory=...)``, positional or keyword construction, ``frozen``, equality,
hashing of frozen records, ``repr`` and ``replace``. Standard library only.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: typing would cost the zygote ~0.6 MB
if TYPE_CHECKING:
    from dataclasses import dataclass as record
    from dataclasses import field, replace
else:
    _MISSING = object()

    class _Factory:
        __slots__ = ("make",)

        def __init__(self, make):
            self.make = make

    def field(*, default_factory):
        return _Factory(default_factory)

    def record(cls=None, *, frozen=False):
        if cls is None:
            return lambda c: _build(c, frozen)
        return _build(cls, frozen)

    def replace(obj, **changes):
        values = {name: getattr(obj, name) for name in type(obj).__record_fields__}
        values.update(changes)
        return type(obj)(**values)

    def _build(cls, frozen):
        # Not inspect.get_annotations: inspect is what this module exists to avoid.
        names = tuple(cls.__dict__.get("__annotations__", {}))  # noqa: RUF063
        defaults = {}
        for name in names:
            value = cls.__dict__.get(name, _MISSING)
            if value is not _MISSING:
                defaults[name] = value
                if isinstance(value, _Factory):
                    delattr(cls, name)

        def __init__(self, *args, **kwargs):
            if len(args) > len(names):
                raise TypeError(f"{cls.__name__}() takes {len(names)} positional arguments")
            given = dict(zip(names, args, strict=False))
            for key, value in kwargs.items():
                if key not in names:
                    raise TypeError(f"{cls.__name__}() got an unexpected argument {key!r}")
                if key in given:
                    raise TypeError(f"{cls.__name__}() got multiple values for {key!r}")
                given[key] = value
            for name in names:
                if name in given:
                    value = given[name]
                elif name in defaults:
                    value = defaults[name]
                    if isinstance(value, _Factory):
                        value = value.make()
                else:
                    raise TypeError(f"{cls.__name__}() missing argument {name!r}")
                object.__setattr__(self, name, value)

        def __repr__(self):
            inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
            return f"{cls.__name__}({inner})"

        def __eq__(self, other):
            if other.__class__ is not self.__class__:
                return NotImplemented
            return all(getattr(self, n) == getattr(other, n) for n in names)

        cls.__record_fields__ = names
        cls.__init__ = __init__
        cls.__repr__ = __repr__
        cls.__eq__ = __eq__
        if frozen:
            def __setattr__(self, name, value):
                raise AttributeError(f"cannot assign to field {name!r} of a frozen record")

            def __hash__(self):
                return hash(tuple(getattr(self, n) for n in names))

            def __delattr__(self, name):
                raise AttributeError(f"cannot delete field {name!r} of a frozen record")

            cls.__setattr__ = __setattr__
            cls.__delattr__ = __delattr__
            cls.__hash__ = __hash__
        else:
            cls.__hash__ = None
        return cls


__all__ = ["field", "record", "replace"]
