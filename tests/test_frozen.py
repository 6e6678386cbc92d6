"""`quick_init` gives a frozen slots dataclass the same constructor, quicker: on any values,
positional or by keyword, defaults left out or given, the object equals the one the dataclass's
own `__init__` makes, and it stays frozen."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterfox_cli.frozen import quick_init
from meterfox_cli.pricing.quote import Price
from meterfox_cli.records import UsageRecord
from meterfox_cli.usage import Reading, Usage


@dataclass(frozen=True, slots=True)
class Plain:
    """The reference: what `dataclasses` writes."""

    a: object
    b: object
    c: object = "c"
    d: object = ()


@quick_init
@dataclass(frozen=True, slots=True)
class Quick:
    a: object
    b: object
    c: object = "c"
    d: object = ()


def fields_of(obj: object) -> tuple:
    return tuple(getattr(obj, f.name) for f in dataclasses.fields(obj))  # type: ignore[arg-type]


values = st.one_of(st.none(), st.integers(), st.text(max_size=5), st.floats(allow_nan=False))


@given(values, values, values, values, st.integers(0, 2), st.booleans())
def test_same_object_as_the_dataclass_init(a, b, c, d, given_defaults, by_keyword) -> None:
    args = (a, b, c, d)[: 2 + given_defaults]
    if by_keyword:
        names = ("a", "b", "c", "d")
        quick = Quick(**dict(zip(names, args, strict=False)))
        plain = Plain(**dict(zip(names, args, strict=False)))
    else:
        quick, plain = Quick(*args), Plain(*args)
    assert fields_of(quick) == fields_of(plain)
    assert dataclasses.replace(quick, a=b) == Quick(b, *fields_of(quick)[1:])


def test_still_frozen_and_strict_about_arguments() -> None:
    quick = Quick(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.a = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        Quick(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Quick(1, 2, 3, 4, 5)  # type: ignore[call-arg]
    assert hash(quick) == hash(Quick(1, 2))


@pytest.mark.parametrize("cls", [UsageRecord, Reading, Usage, Price])
def test_the_record_classes_have_it(cls: type) -> None:
    assert cls.__init__.__code__.co_filename == "<string>"  # type: ignore[misc]
    assert "_set_" in " ".join(cls.__init__.__code__.co_names)  # type: ignore[misc]


def test_refuses_what_it_does_not_mirror() -> None:
    with pytest.raises(TypeError, match="not a frozen dataclass"):
        quick_init(dataclass(slots=True)(type("Open", (), {"__annotations__": {"a": int}})))
    with pytest.raises(TypeError, match="not a plain field"):

        @quick_init
        @dataclass(frozen=True, slots=True)
        class Factory:
            a: list = field(default_factory=list)
