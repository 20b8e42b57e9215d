"""The WebSocket opening handshake (RFC 6455 §4): validate, accept, reject, check the 101."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import sys
from collections.abc import Callable, Sequence

from lwsbridge.core.errors import LocalProtocolError, RemoteProtocolError
from lwsbridge.core.events import ExtensionOffer, Headers
from lwsbridge.core.extensions import (
    Extension,
    ExtensionFactory,
    format_extensions,
    parse_extensions,
)
from lwsbridge.core.http11 import build_head, build_response

__all__ = [
    "GUID",
    "ClientHandshake",
    "accept_key",
    "build_accept",
    "build_client_request",
    "build_reject",
    "check_response",
    "is_websocket_upgrade",
    "make_key",
    "parse_subprotocols",
    "upgrade_lists_websocket",
    "validate_upgrade",
]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3

HeaderList = Sequence[tuple[str | bytes, str | bytes]]

_PLAIN_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: "
)


# What base64.b64encode(s) and b64decode(s, validate=True) do for bytes, without their
# Python frames (three per handshake): b64decode is a2b_base64(s, strict_mode=validate)
# from 3.11 on, where strict_mode appeared.
_b64encode = functools.partial(binascii.b2a_base64, newline=False)
_b64decode_strict: Callable[[bytes], bytes] = (
    functools.partial(binascii.a2b_base64, strict_mode=True)
    if sys.version_info >= (3, 11)
    else functools.partial(base64.b64decode, validate=True)
)
_sha1 = hashlib.sha1


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (§4.2.2 item 5.4)."""
    return _b64encode(_sha1(key + GUID).digest())


def make_key() -> bytes:
    """A fresh random ``Sec-WebSocket-Key``: base64 of 16 random bytes (§4.1 item 7)."""
    return base64.b64encode(os.urandom(16))


def _list_items(values: list[bytes]) -> list[bytes]:
    """The comma-separated items of ``values``, empties dropped (as Headers.get_list)."""
    out: list[bytes] = []
    for value in values:
        for item in value.split(b","):
            item = item.strip()
            if item:
                out.append(item)
    return out


def _lists_token(values: list[bytes], token: bytes) -> bool:
    """Whether a comma-separated item of the field ``values``, stripped and lower-cased,
    is ``token`` (an empty item never is); no list of the items is made."""
    for value in values:
        if value.lower() == token:  # the usual field, the token alone: no split
            return True
        for item in value.split(b","):
            if item.strip().lower() == token:
                return True
    return False


def is_websocket_upgrade(headers: Headers) -> bool:
    """True if the request asks to upgrade to WebSocket (``Upgrade`` lists ``websocket``)."""
    return _lists_token(headers.get_all(b"upgrade"), b"websocket")


def upgrade_lists_websocket(upgrade_values: list[bytes]) -> bool:
    """:func:`is_websocket_upgrade` from the ``Upgrade`` field values already gathered."""
    return _lists_token(upgrade_values, b"websocket")


def parse_subprotocols(headers: Headers) -> tuple[str, ...]:
    return tuple(v.decode("latin-1") for v in headers.get_list(b"sec-websocket-protocol"))


def validate_upgrade(
    method: str, version: tuple[int, int], headers: Headers
) -> tuple[bytes, tuple[str, ...], tuple[ExtensionOffer, ...]]:
    """Check a WebSocket upgrade request (§4.2.1).

    Returns ``(key, subprotocols, extension offers)``; raises RemoteProtocolError with
    status 400, 405 or 426 (426 when only the version is wrong, §4.4).
    """
    if method != "GET":
        raise RemoteProtocolError(f"WebSocket upgrade must use GET, not {method}", status=405)
    if version < (1, 1):
        raise RemoteProtocolError("WebSocket upgrade needs HTTP/1.1", status=400)
    # One pass over the fields for every header this needs (it runs per connection);
    # the same values, in order, as headers.get_all() of each name.
    hosts = 0
    connection: list[bytes] = []
    keys: list[bytes] = []
    version_fields: list[bytes] = []
    extension_fields: list[bytes] = []
    protocol_fields: list[bytes] = []
    for name, value in headers.fields:
        if name == b"host":
            hosts += 1
        elif name == b"connection":
            connection.append(value)
        elif name == b"sec-websocket-key":
            keys.append(value)
        elif name == b"sec-websocket-version":
            version_fields.append(value)
        elif name == b"sec-websocket-extensions":
            extension_fields.append(value)
        elif name == b"sec-websocket-protocol":
            protocol_fields.append(value)
    if hosts != 1:
        raise RemoteProtocolError("exactly one Host header is required", status=400)
    if not _lists_token(connection, b"upgrade"):
        raise RemoteProtocolError("Connection header lacks the 'upgrade' token", status=400)
    if len(keys) != 1:
        raise RemoteProtocolError("exactly one Sec-WebSocket-Key header is required", status=400)
    key = keys[0]
    try:
        raw = _b64decode_strict(key)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise RemoteProtocolError("Sec-WebSocket-Key is not base64 of 16 bytes", status=400)
    # The one field "13" as sent (the common request) needs no split: the same answer.
    if version_fields != [b"13"] and _list_items(version_fields) != [b"13"]:
        raise RemoteProtocolError(
            "unsupported Sec-WebSocket-Version (only 13 is supported)", status=426
        )
    # Without the fields (the common request), no call: the same empty tuples.
    extensions = parse_extensions(extension_fields) if extension_fields else ()
    protocols = (
        tuple([v.decode("latin-1") for v in _list_items(protocol_fields)])
        if protocol_fields
        else ()
    )
    return key, protocols, extensions


def build_accept(
    key: bytes,
    subprotocol: str | None = None,
    extensions: Sequence[ExtensionOffer] = (),
    extra_headers: HeaderList = (),
) -> bytes:
    """The ``101 Switching Protocols`` response (§4.2.2 item 5)."""
    if not subprotocol and not extensions and not extra_headers:
        # The common answer, without build_head's per-field checks: the accept value is
        # base64 (no CR or LF can reach the head).
        return _PLAIN_101 + accept_key(key) + b"\r\n\r\n"
    fields: list[tuple[str | bytes, str | bytes]] = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_key(key)),
    ]
    if subprotocol:
        fields.append(("Sec-WebSocket-Protocol", subprotocol))
    if extensions:
        fields.append(("Sec-WebSocket-Extensions", format_extensions(extensions)))
    fields.extend(extra_headers)
    return build_head("HTTP/1.1 101 Switching Protocols", fields)


def build_reject(status: int, reason: str, extra_headers: HeaderList = ()) -> bytes:
    """An error response that says why, and closes the connection."""
    fields: list[tuple[str | bytes, str | bytes]] = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Connection", "close"),
    ]
    if status == 426:
        # §4.4: tell the client which version we speak.
        fields.append(("Sec-WebSocket-Version", "13"))
    fields.extend(extra_headers)
    return build_response(status, fields, (reason + "\n").encode("utf-8", "replace"))


def build_client_request(
    host: str,
    target: str,
    key: bytes,
    subprotocols: Sequence[str] = (),
    extensions: Sequence[ExtensionOffer] = (),
    origin: str | None = None,
    extra_headers: HeaderList = (),
) -> bytes:
    """The client's opening handshake (§4.1)."""
    if not target.startswith("/"):
        raise ValueError(f"request target must start with '/': {target!r}")
    fields: list[tuple[str | bytes, str | bytes]] = [
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]
    if origin:
        fields.append(("Origin", origin))
    if subprotocols:
        fields.append(("Sec-WebSocket-Protocol", ", ".join(subprotocols)))
    if extensions:
        fields.append(("Sec-WebSocket-Extensions", format_extensions(extensions)))
    fields.extend(extra_headers)
    return build_head(f"GET {target} HTTP/1.1", fields)


def check_response(
    status: int,
    headers: Headers,
    key: bytes,
    subprotocols: Sequence[str],
    extension_names: Sequence[str],
) -> tuple[str | None, tuple[ExtensionOffer, ...]]:
    """Check the server's answer (§4.1, client's checks 1-6); returns (subprotocol, extensions).

    Raises RemoteProtocolError with a readable reason on any failure.
    """
    if status != 101:
        raise RemoteProtocolError(f"server answered {status} instead of 101", status=status)
    if not _lists_token(headers.get_all(b"upgrade"), b"websocket"):
        raise RemoteProtocolError("101 response lacks 'Upgrade: websocket'")
    if not _lists_token(headers.get_all(b"connection"), b"upgrade"):
        raise RemoteProtocolError("101 response lacks 'Connection: upgrade'")
    if headers.get_all(b"sec-websocket-accept") != [accept_key(key)]:
        raise RemoteProtocolError("wrong Sec-WebSocket-Accept in the 101 response")
    chosen = headers.get_list(b"sec-websocket-protocol")
    subprotocol: str | None = None
    if chosen:
        if len(chosen) != 1 or chosen[0].decode("latin-1") not in subprotocols:
            raise RemoteProtocolError(
                f"server chose a subprotocol we did not offer: {b', '.join(chosen)!r}"
            )
        subprotocol = chosen[0].decode("latin-1")
    elif subprotocols:
        # Browsers fail such a connection too: the client asked for a protocol.
        raise RemoteProtocolError("server chose none of the subprotocols we offered")
    accepted = parse_extensions(headers.get_all(b"sec-websocket-extensions"))
    for ext in accepted:
        if ext.name not in extension_names:
            raise RemoteProtocolError(f"server accepted an extension we did not offer: {ext.name}")
    return subprotocol, accepted


class ClientHandshake:
    """The client's side of the opening handshake: the request it sends (§4.1) and the
    check of the server's answer against what was offered (§4.2.2)."""

    __slots__ = ("_factories", "_key", "_protocols")

    def __init__(self) -> None:
        self._key = b""
        self._protocols: tuple[str, ...] = ()
        self._factories: dict[str, ExtensionFactory] = {}

    def request(
        self,
        host: str,
        target: str,
        subprotocols: Sequence[str],
        extensions: Sequence[ExtensionFactory],
        origin: str | None,
        extra_headers: HeaderList,
        key: bytes | None,
    ) -> bytes:
        """The request to send; ``key`` None makes a fresh one.  Raises LocalProtocolError."""
        if key is None:
            key = make_key()
        offers = [f.offer() for f in extensions]
        try:
            request = build_client_request(
                host, target, key, subprotocols, offers, origin, extra_headers
            )
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        self._key = key
        self._protocols = tuple(subprotocols)
        self._factories = {f.name: f for f in extensions}
        return request

    def check(
        self, status: int, headers: Headers
    ) -> tuple[str | None, tuple[ExtensionOffer, ...], Extension | None]:
        """``(subprotocol, accepted offers, extension)`` of a valid 101, else
        RemoteProtocolError."""
        subprotocol, accepted = check_response(
            status, headers, self._key, self._protocols, list(self._factories)
        )
        exts = [self._factories[a.name].finalize(a) for a in accepted]
        if len(exts) > 1:
            raise RemoteProtocolError("more than one extension accepted")
        return subprotocol, accepted, exts[0] if exts else None
