"""The events are frozen, slotted dataclasses whose ``__init__`` stores through the slots
(lwsbridge.core.events._store_through_slots): everything a dataclass's own ``__init__``
gives must hold for every one of them."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle

import pytest

from lwsbridge.core import events
from lwsbridge.core.events import DataReceived, HandshakeFailed, Headers

CLASSES = [
    getattr(events, n) for n in events.__all__ if dataclasses.is_dataclass(getattr(events, n))
]


def _sample(cls: type) -> object:
    """An instance with every field given, each a distinct value."""
    args = {f.name: f"v{i}" for i, f in enumerate(dataclasses.fields(cls))}
    return cls(**args)


def test_every_dataclass_of_the_module_is_covered() -> None:
    assert DataReceived in CLASSES and HandshakeFailed in CLASSES
    assert len(CLASSES) == 13


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_fields_are_stored_and_frozen(cls: type) -> None:
    ev = _sample(cls)
    for i, f in enumerate(dataclasses.fields(cls)):
        assert getattr(ev, f.name) == f"v{i}"
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(ev, f.name, "other")
    # equal, hashable, copyable and picklable as a dataclass is
    assert ev == _sample(cls) and hash(ev) == hash(_sample(cls))
    assert copy.copy(ev) == ev and pickle.loads(pickle.dumps(ev)) == ev
    assert not hasattr(ev, "__dict__")


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_signature_is_the_dataclass_one(cls: type) -> None:
    params = list(inspect.signature(cls).parameters.values())
    fields = dataclasses.fields(cls)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        if f.default is not dataclasses.MISSING:
            assert p.default == f.default
        elif f.default_factory is dataclasses.MISSING:
            assert p.default is inspect.Parameter.empty
    required = [
        f
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    assert required
    with pytest.raises(TypeError, match="missing"):
        cls(*(["x"] * (len(required) - 1)))
    with pytest.raises(TypeError):
        cls(*(["x"] * (len(fields) + 1)))


def test_defaults_and_factory() -> None:
    ev = DataReceived(b"x", False, True, True)
    assert (ev.remaining, ev.frame_final) == (0, True)
    assert DataReceived(data=b"y", is_binary=True, is_first=False, is_final=False, remaining=3) == (
        DataReceived(b"y", True, False, False, 3, True)
    )
    a, b = HandshakeFailed("no"), HandshakeFailed("no")
    assert isinstance(a.headers, Headers) and a.headers is not b.headers
    given = Headers([(b"a", b"1")])
    assert HandshakeFailed("no", 400, given).headers is given
    assert repr(inspect.signature(HandshakeFailed).parameters["headers"].default) == "<factory>"
    assert dataclasses.replace(ev, data=b"z").data == b"z"
