"""Events the core hands out: small, frozen, slotted classes that only carry data."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

__all__ = [
    "CloseReceived",
    "Closed",
    "ConnectionFailed",
    "DataReceived",
    "Established",
    "Event",
    "ExtensionOffer",
    "HTTPBody",
    "HTTPRequest",
    "HandshakeFailed",
    "Headers",
    "Ping",
    "Pong",
    "RequestRejected",
    "UpgradeRequest",
]


class Headers:
    """An ordered, read-only list of HTTP header fields.

    Names are kept lower-cased (HTTP field names are case-insensitive, RFC 9110 §5.1);
    values are the raw bytes with surrounding whitespace stripped.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[bytes, bytes]] = ()) -> None:
        # A list comprehension, not a generator: one call, not one per field.
        self._fields: tuple[tuple[bytes, bytes], ...] = tuple(
            [(name.lower(), value) for name, value in fields]
        )

    def get(self, name: str | bytes, default: bytes | None = None) -> bytes | None:
        """The value of ``name``; several fields of that name are joined with ``, ``."""
        key = name.lower().encode("latin-1") if isinstance(name, str) else name.lower()
        values = [v for n, v in self._fields if n == key]
        if not values:
            return default
        return values[0] if len(values) == 1 else b", ".join(values)

    def get_all(self, name: str | bytes) -> list[bytes]:
        key = name.lower().encode("latin-1") if isinstance(name, str) else name.lower()
        return [v for n, v in self._fields if n == key]

    def get_list(self, name: str | bytes) -> list[bytes]:
        """The comma-separated items of every field ``name`` (RFC 9110 §5.6.1), empties dropped."""
        out: list[bytes] = []
        for value in self.get_all(name):
            out.extend(item.strip() for item in value.split(b",") if item.strip())
        return out

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, (str, bytes)):
            return False
        return bool(self.get_all(name))

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._fields)

    if TYPE_CHECKING:

        @property
        def fields(self) -> tuple[tuple[bytes, bytes], ...]: ...

    else:
        # Read-only, with a C getter: the handshake walks the fields twice per
        # connection, and iter(headers) is a Python __iter__ call each time.
        fields = property(
            attrgetter("_fields"), doc="The ``(name, value)`` fields, in order (a tuple)."
        )

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._fields == other._fields

    def __hash__(self) -> int:
        return hash(self._fields)

    def __repr__(self) -> str:
        return f"Headers({list(self._fields)!r})"


@dataclass(frozen=True, slots=True)
class ExtensionOffer:
    """One item of ``Sec-WebSocket-Extensions`` (RFC 6455 §9.1): a name and its parameters.

    A parameter without a value has ``None``; quoted values are unquoted.
    """

    name: str
    params: tuple[tuple[str, str | None], ...] = ()

    def param(self, key: str, default: str | None = None) -> str | None:
        for k, v in self.params:
            if k == key:
                return v
        return default

    def has(self, key: str) -> bool:
        return any(k == key for k, _ in self.params)

    def serialize(self) -> str:
        parts = [self.name]
        for k, v in self.params:
            parts.append(k if v is None else f"{k}={v}")
        return "; ".join(parts)


class Event:
    """Base class of all events (for ``isinstance`` and typing)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class HTTPRequest(Event):
    """A plain (non-upgrade) HTTP request head (server role).

    The connection then waits for the caller's response (``send_http_response``);
    a body announced by ``Content-Length`` follows as :class:`HTTPBody` events.
    """

    method: str
    target: str
    headers: Headers
    keep_alive: bool
    content_length: int = 0


@dataclass(frozen=True, slots=True)
class HTTPBody(Event):
    """A piece of a plain HTTP request body; ``final`` on the last one."""

    data: bytes
    final: bool


@dataclass(frozen=True, slots=True)
class UpgradeRequest(Event):
    """A valid WebSocket opening handshake (server role), waiting for accept/reject."""

    target: str
    headers: Headers
    key: bytes
    subprotocols: tuple[str, ...]
    extensions: tuple[ExtensionOffer, ...]


@dataclass(frozen=True, slots=True)
class RequestRejected(Event):
    """The core answered a bad request itself (400/426/431...) and will close (server role)."""

    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class Established(Event):
    """The WebSocket is open (both roles). ``headers`` are the peer's handshake headers."""

    subprotocol: str | None
    extensions: tuple[ExtensionOffer, ...]
    headers: Headers
    status: int = 101


@dataclass(frozen=True, slots=True)
class HandshakeFailed(Event):
    """The server's response was not an acceptable 101 (client role). The connection is closed."""

    reason: str
    status: int | None = None
    headers: Headers = field(default_factory=Headers)


@dataclass(frozen=True, slots=True)
class DataReceived(Event):
    """A piece of a text or binary message, delivered as it arrives (lws's RECEIVE).

    ``is_first``: first piece of a message; ``is_final``: last piece of the message
    (lws ``is_final_fragment`` of the last frame with nothing left); ``remaining``:
    payload bytes of the current frame still to come (lws ``remaining_packet_payload``);
    ``frame_final``: the current frame has FIN set.  Text pieces are complete UTF-8 only
    at ``is_final``; a piece may end mid-character.
    """

    data: bytes
    is_binary: bool
    is_first: bool
    is_final: bool
    remaining: int = 0
    frame_final: bool = True


@dataclass(frozen=True, slots=True)
class Ping(Event):
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong(Event):
    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived(Event):
    """The peer's close frame (code 1005 if it carried none, RFC 6455 §7.1.5)."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionFailed(Event):
    """We failed the connection because of the peer (RFC 6455 §7.1.7); ``code`` was sent."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Closed(Event):
    """Terminal event, exactly once: the connection is over; no more input is read.

    ``clean``: both close frames were exchanged.  ``code``/``reason``: the peer's close
    frame if one came, else the code we failed with, else 1006 (abnormal closure).
    """

    code: int
    reason: str
    clean: bool


class _Factory:
    """The default of a field made by its factory, as ``inspect.signature`` shows it."""

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def _store_through_slots(cls: type) -> None:
    """Give the frozen dataclass ``cls`` an ``__init__`` that stores each field through
    its slot's own descriptor, with the signature and defaults dataclass made.

    A frozen dataclass's ``__init__`` stores each field with ``object.__setattr__``
    (by name, through the instance's refused ``__setattr__``): 1.7 us for a
    :class:`DataReceived`, once per message received, where the slots' ``__set__``
    take 0.7 us.  The instances stay as frozen (assignment raises
    ``FrozenInstanceError``), and compare, hash, print and pickle as before.
    Generated from the dataclass's fields, as dataclass generates its own.
    """
    names: dict[str, object] = {"_MISSING": _FACTORY}
    params: list[str] = []
    body: list[str] = []
    for f in fields(cls):
        n = f.name
        names[f"_set_{n}"] = getattr(cls, n).__set__
        if f.default is not MISSING:
            names[f"_default_{n}"] = f.default
            params.append(f"{n}=_default_{n}")
        elif f.default_factory is not MISSING:
            names[f"_factory_{n}"] = f.default_factory
            params.append(f"{n}=_MISSING")
            body.append(f"if {n} is _MISSING: {n} = _factory_{n}()")
        else:
            params.append(n)
        body.append(f"_set_{n}(self, {n})")
    source = f"def __init__(self, {', '.join(params)}):\n    " + "\n    ".join(body) + "\n"
    exec(source, names)  # our own field names, as dataclasses does
    init: Any = names["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    cls.__init__ = init  # type: ignore[misc]


# Every dataclass here, the events and ExtensionOffer.
for _name in __all__:
    if is_dataclass(globals()[_name]):
        _store_through_slots(globals()[_name])
del _name
