"""`quick_init`: the `__init__` of a frozen slots dataclass made once a record (UsageRecord and
its parts, Price) at about half the cost of the one `dataclasses` writes, with the same
parameters, defaults and result.

A frozen dataclass's own `__init__` sets each field through `object.__setattr__(self, name,
value)`: the attribute is looked up by name on every call. Here each field is set through its
slot's descriptor, fetched once: in the record writer, about 20k instructions a record less,
on some 30 fields a record (docs/performance.md, "Round five").
"""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from types import MemberDescriptorType
from typing import TypeVar

T = TypeVar("T", bound=type)


def quick_init(cls: T) -> T:
    """Give the frozen slots dataclass `cls` the quicker `__init__` (a class decorator, put
    above `@dataclass(frozen=True, slots=True)`). Only plain fields are taken: positional or
    keyword, with or without a default value; no default factories, no keyword-only or
    init=False fields, no `__post_init__`."""
    if not is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{cls.__name__} is not a frozen dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__")
    namespace: dict[str, object] = {}
    parameters, lines = [], []
    for f in fields(cls):
        slot = cls.__dict__.get(f.name)
        if not isinstance(slot, MemberDescriptorType):
            raise TypeError(f"{cls.__name__}.{f.name} is not a slot")
        if not f.init or f.kw_only or f.default_factory is not MISSING:
            raise TypeError(f"{cls.__name__}.{f.name} is not a plain field")
        if f.default is MISSING:
            parameters.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            parameters.append(f"{f.name}=_default_{f.name}")
        namespace[f"_set_{f.name}"] = slot.__set__
        lines.append(f"    _set_{f.name}(self, {f.name})")
    source = f"def __init__(self, {', '.join(parameters)}):\n" + "\n".join(lines or ["    pass"])
    exec(source, namespace)  # as dataclasses writes its own
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"  # type: ignore[attr-defined]
    init.__module__ = cls.__module__  # type: ignore[attr-defined]
    cls.__init__ = init  # type: ignore[misc]
    return cls
