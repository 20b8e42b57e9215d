"""The sans-IO core: RFC 6455 and HTTP/1.1 as state machines; no sockets, clocks or loops."""

from lwsbridge.core.assembler import Message, MessageAssembler, MessageTooBig
from lwsbridge.core.connection import WSConnection
from lwsbridge.core.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from lwsbridge.core.events import (
    Closed,
    CloseReceived,
    ConnectionFailed,
    DataReceived,
    Established,
    Event,
    ExtensionOffer,
    HandshakeFailed,
    Headers,
    HTTPBody,
    HTTPRequest,
    Ping,
    Pong,
    RequestRejected,
    UpgradeRequest,
)
from lwsbridge.core.extensions import Extension, ExtensionFactory
from lwsbridge.core.frames import Opcode
from lwsbridge.core.state import Role, State

__all__ = [
    "CloseReceived",
    "Closed",
    "ConnectionFailed",
    "DataReceived",
    "Established",
    "Event",
    "Extension",
    "ExtensionFactory",
    "ExtensionOffer",
    "HTTPBody",
    "HTTPRequest",
    "HandshakeFailed",
    "Headers",
    "LocalProtocolError",
    "Message",
    "MessageAssembler",
    "MessageTooBig",
    "Opcode",
    "Ping",
    "Pong",
    "ProtocolError",
    "RemoteProtocolError",
    "RequestRejected",
    "Role",
    "State",
    "UpgradeRequest",
    "WSConnection",
]
