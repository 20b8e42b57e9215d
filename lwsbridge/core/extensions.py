"""WebSocket extensions (RFC 6455 §9): header parsing and the hook extensions plug into."""

from __future__ import annotations

import re
from collections.abc import Sequence

from lwsbridge.core.errors import RemoteProtocolError
from lwsbridge.core.events import ExtensionOffer

__all__ = [
    "Extension",
    "ExtensionFactory",
    "format_extensions",
    "parse_extensions",
]

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(r"\s*(" + _TOKEN + r")\s*(?:=\s*(" + _TOKEN + r'|"[^"]*")\s*)?')


def parse_extensions(values: Sequence[bytes]) -> tuple[ExtensionOffer, ...]:
    """Parse every ``Sec-WebSocket-Extensions`` field value (RFC 6455 §9.1 grammar).

    Raises :class:`RemoteProtocolError` (status 400) on a malformed value.
    """
    offers: list[ExtensionOffer] = []
    for raw in values:
        text = raw.decode("latin-1")
        for item in text.split(","):
            if not item.strip():
                continue
            parts = item.split(";")
            name = parts[0].strip()
            if not re.fullmatch(_TOKEN, name):
                raise RemoteProtocolError(f"malformed extension name {name[:40]!r}", status=400)
            params: list[tuple[str, str | None]] = []
            for p in parts[1:]:
                m = _PARAM.fullmatch(p)
                if m is None:
                    raise RemoteProtocolError(
                        f"malformed extension parameter {p.strip()[:40]!r}", status=400
                    )
                value = m.group(2)
                if value is not None and value.startswith('"'):
                    value = value[1:-1]
                    # §9.1: a quoted value must still be a token after unquoting.
                    if not re.fullmatch(_TOKEN, value):
                        raise RemoteProtocolError(
                            f"malformed quoted extension parameter {value[:40]!r}", status=400
                        )
                params.append((m.group(1), value))
            offers.append(ExtensionOffer(name, tuple(params)))
    return tuple(offers)


def format_extensions(offers: Sequence[ExtensionOffer]) -> str:
    return ", ".join(o.serialize() for o in offers)


class Extension:
    """One negotiated extension on one connection: the hook the frame layer calls.

    The base class is the identity transform and claims no RSV bit.  permessage-deflate
    (RFC 7692) subclasses it: it claims RSV1 on the first frame of a message, inflates
    as data arrives (``decode``) with the message size limit checked *while* inflating,
    and may hold output it could not return yet (``pending``), which the context turns
    into forced service.
    """

    #: registered extension name, as in the handshake
    name: str = ""
    #: RSV bits (0x40 RSV1, 0x20 RSV2, 0x10 RSV3) allowed on the first frame of a data message
    rsv_mask: int = 0

    def response(self) -> ExtensionOffer:
        """The item to send back in ``Sec-WebSocket-Extensions`` (server role)."""
        return ExtensionOffer(self.name)

    def decode(self, data: bytes, rsv: int, message_final: bool, max_size: int | None) -> bytes:
        """Transform received payload of a data message (``rsv`` of its first frame).

        ``max_size``: bytes the result may hold before the message limit is hit (None:
        no limit); exceeding it raises ``RemoteProtocolError(code=1009)`` at once.
        ``message_final``: the message's input is complete.  An extension may return
        part of the output and hold the rest (``pending()`` True): the connection then
        calls ``decode(b"", rsv, message_final, max_size)`` again from
        ``WSConnection.process_pending`` until ``pending()`` is False, and only then
        treats the message as complete and parses further input.
        """
        return data

    def pending(self) -> bool:
        """True when decoded output is held back and must be delivered without new input."""
        return False

    def encode(self, data: bytes, first: bool, final: bool) -> tuple[bytes, int]:
        """Transform payload to send; returns ``(payload, rsv bits for this frame)``."""
        return data, 0


class ExtensionFactory:
    """Negotiates one extension (both roles); holds its configuration."""

    name: str = ""

    def accept(self, offers: Sequence[ExtensionOffer]) -> Extension | None:
        """Server role: choose among the client's offers of ``name``; None declines."""
        return None

    def offer(self) -> ExtensionOffer:
        """Client role: what to put in the request."""
        return ExtensionOffer(self.name)

    def finalize(self, response: ExtensionOffer) -> Extension:
        """Client role: the server accepted ``response``; RemoteProtocolError if unacceptable."""
        raise RemoteProtocolError(f"unsupported extension {response.name!r}")
