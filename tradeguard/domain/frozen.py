"""`fast_frozen_init`: a faster `__init__` for the frozen slots dataclasses made on every order.

The `__init__` dataclasses writes for a frozen class calls ``object.__setattr__`` once per field
(to get past the frozen ``__setattr__``): four fifths of the cost of making a value of twenty
fields, and the order path makes several per order (claims, requests, broker orders, ledger
positions, results).

The one written here makes the new instance, for the length of its `__init__`, an instance of
a *twin*: a plain (not frozen) class with exactly the same slots, whose attribute stores are
the interpreter's fastest; then it gives the instance its class back. Python allows the switch
because the two layouts are identical (same base, same slots in the same order). Nothing else
ever sees the twin: the instance is not reachable from anywhere else while its `__init__` runs,
and every field is written before `__post_init__` (which sees the real class). An instance of a
subclass (which would not share the layout) is written field by field through the slots'
descriptors instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, fields
from typing import Any, TypeVar

__all__ = ["fast_frozen_init"]

_C = TypeVar("_C", bound=type[Any])


class _Factory:
    def __repr__(self) -> str:
        return "<factory>"  # as dataclasses shows a default made by a factory


_FACTORY = _Factory()


def fast_frozen_init(cls: _C) -> _C:
    """Give frozen slots dataclass `cls` a faster `__init__` of the same signature (see the module).

    Same parameters, defaults and default factories as the one dataclasses writes; fields with
    ``init=False`` get their default (or their factory's value); `__post_init__` runs last, as
    before. Returns `cls`: a class decorator, applied above ``@dataclass(frozen=True, slots=True)``.
    """
    twin = type(f"_{cls.__name__}Twin", (), {"__slots__": cls.__slots__, "__module__": cls.__module__})
    params: list[str] = []
    values: list[tuple[str, str]] = []  # (field, the expression of its value)
    scope: dict[str, Any] = {"_MISSING": _FACTORY, "_cls": cls, "_twin": twin, "_osa": object.__setattr__}
    for f in fields(cls):
        if f.kw_only:
            raise TypeError(f"{cls.__name__}.{f.name}: keyword-only fields are not supported")
        scope[f"_set_{f.name}"] = cls.__dict__[f.name].__set__
        if f.default is not MISSING:
            scope[f"_default_{f.name}"] = f.default
            if f.init:
                params.append(f"{f.name}=_default_{f.name}")
            values.append((f.name, f.name if f.init else f"_default_{f.name}"))
        elif f.default_factory is not MISSING:
            scope[f"_factory_{f.name}"] = f.default_factory
            if f.init:
                params.append(f"{f.name}=_MISSING")
                values.append((f.name, f"_factory_{f.name}() if {f.name} is _MISSING else {f.name}"))
            else:
                values.append((f.name, f"_factory_{f.name}()"))
        elif f.init:
            params.append(f.name)
            values.append((f.name, f.name))
        # init=False without a default: left unset, as dataclasses leaves it
    lines = ["    if type(self) is _cls:", "        _osa(self, '__class__', _twin)"]
    lines += [f"        self.{name} = {value}" for name, value in values]
    lines += ["        self.__class__ = _cls", "    else:"]
    lines += [f"        _set_{name}(self, {value})" for name, value in values] or ["        pass"]
    if hasattr(cls, "__post_init__"):
        lines.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(lines) + "\n"
    exec(source, scope)  # noqa: S102 - generated from the class's own fields, as dataclasses does
    init: Callable[..., None] = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init
    return cls
