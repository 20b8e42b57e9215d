"""permessage-deflate (RFC 7692) on the extension hook, both roles, with stdlib ``zlib``.

Use :class:`PerMessageDeflateFactory`: a server passes the client's offers to
``accept`` and hands the result to ``WSConnection.accept(extensions=[...])``; a client
passes the factory to ``WSConnection.initiate(extensions=[...])``, which calls
``offer`` and ``finalize``.

Design notes:

* **State only when negotiated, and only while needed.**  The zlib objects are created
  lazily, on the first compressed message in each direction.  With
  ``*_no_context_takeover`` they are dropped at every message end, so an idle
  connection holds no zlib state at all (RFC 7692 §7.1.1).
* **Bounded inflation.**  ``decode`` inflates with ``decompress(data, max_length)``:
  never more than ``max_size + 1`` bytes (the remaining allowance under the
  connection's ``max_message_size``; one more shows it is exceeded, closing with 1009)
  and never more than ``chunk_size`` bytes per call (default 256 KiB).  What zlib did
  not produce yet stays as compressed input (``unconsumed_tail``) and
  :meth:`PerMessageDeflate.pending` is True; the connection then stops parsing and
  the context calls ``WSConnection.process_pending()`` (forced service), which calls
  ``decode(b"", ...)`` again for the next piece.  A decompression bomb is therefore
  never materialised: at most one piece of output exists at a time.
* **8-bit windows.**  zlib refuses ``wbits=8`` for raw deflate streams
  (``deflateInit2`` returns ``Z_STREAM_ERROR``).  When 8 is negotiated for our
  compressor we compress with 9 bits, as zlib itself (since 1.2.9, for zlib streams)
  and other implementations do.  That is safe: zlib never emits a match distance
  above ``2**wbits - 262`` (``MAX_DIST``: the window minus ``MIN_LOOKAHEAD``), i.e.
  250 bytes for 9 bits, which fits an 8-bit (256-byte) window.  The decompressor
  always uses ``max(negotiated, 9)`` bits: a larger inflate window accepts every
  stream a smaller one does, and it accepts peers that made the same substitution.
* **Message framing.**  RSV1 goes on the first frame of a compressed message only;
  every fragment is sync-flushed (so it can be inflated at once) and the final
  empty-block tail ``00 00 ff ff`` is stripped from the last one (§7.2.1); the
  receiver appends it when the message's input is complete (§7.2.2).  A message
  sent whole (first frame is also final) and shorter than ``min_size`` goes out
  uncompressed with RSV1 clear (§6.1 lets a sender choose per message); fragmented
  messages are always compressed, their size being unknown at the first frame.
* Inflate errors close with 1007; data after a final (BFINAL) block closes with 1002.
* **Level 1 by default**, as libwebsockets (``PMD_COMP_LEVEL`` 1, ``PMD_MEM_LEVEL`` 8,
  both windows 15).  Compressing is by far the largest cost of a compressed echo;
  on 4 KiB text messages level 1 took about a fifth of the time of zlib's default
  level 6, for output about 18% larger (benchmarks/README.md, "permessage-deflate").
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from lwsbridge.core.errors import RemoteProtocolError
from lwsbridge.core.events import ExtensionOffer
from lwsbridge.core.extensions import Extension, ExtensionFactory

__all__ = ["PerMessageDeflate", "PerMessageDeflateFactory"]

NAME = "permessage-deflate"
_TAIL = b"\x00\x00\xff\xff"
_RSV1 = 0x40
_BITS_VALUES = {str(b): b for b in range(8, 16)}  # §7.1.2: 8..15, no leading zeros
_FLAGS = ("server_no_context_takeover", "client_no_context_takeover")
_KNOWN = (*_FLAGS, "server_max_window_bits", "client_max_window_bits")


def _check_bits(name: str, bits: int) -> None:
    if not (isinstance(bits, int) and 8 <= bits <= 15):
        raise ValueError(f"{name} must be 8..15, not {bits!r}")


class PerMessageDeflate(Extension):
    """permessage-deflate on one connection.  "local" is our sending side.

    Built by :class:`PerMessageDeflateFactory`; the constructor takes the negotiated
    values.  ``local_max_window_bits`` limits our compressor, ``remote_max_window_bits``
    what the peer may use (our decompressor's window).
    """

    name = NAME
    rsv_mask = _RSV1

    def __init__(
        self,
        *,
        local_no_context_takeover: bool = False,
        remote_no_context_takeover: bool = False,
        local_max_window_bits: int = 15,
        remote_max_window_bits: int = 15,
        level: int = 1,
        mem_level: int = 8,
        min_size: int = 0,
        chunk_size: int = 256 * 1024,
        response: ExtensionOffer | None = None,
    ) -> None:
        _check_bits("local_max_window_bits", local_max_window_bits)
        _check_bits("remote_max_window_bits", remote_max_window_bits)
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_max_window_bits = local_max_window_bits
        self.remote_max_window_bits = remote_max_window_bits
        self.level = level
        self.mem_level = mem_level
        self.min_size = min_size
        self.chunk_size = chunk_size
        self._response = response if response is not None else ExtensionOffer(NAME)
        # zlib wbits actually used (see the module notes on 8-bit windows)
        self._cwbits = max(local_max_window_bits, 9)
        self._dwbits = max(remote_max_window_bits, 9)
        # sending
        self._compressor: zlib._Compress | None = None  # created lazily
        self._compressing = False  # the message being sent is compressed
        # receiving
        self._decompressor: zlib._Decompress | None = None  # created lazily
        self._in = b""  # compressed input zlib has not consumed yet
        self._full = False  # the last call hit its output cap: zlib may hold more
        self._tail_added = False  # the message's input is complete (tail appended)
        # The peer's deflate stream ended (BFINAL) before its message did: whatever of
        # the message comes in later reads is data after the final block too.
        self._stream_ended = False

    @property
    def has_compressor(self) -> bool:
        """A zlib compressor is alive (made lazily; dropped with no_context_takeover)."""
        return self._compressor is not None

    @property
    def has_decompressor(self) -> bool:
        """A zlib decompressor is alive (made lazily; dropped with no_context_takeover)."""
        return self._decompressor is not None

    def __repr__(self) -> str:
        return f"PerMessageDeflate({self._response.serialize()!r})"

    def response(self) -> ExtensionOffer:
        return self._response

    # ------------------------------------------------------------------ receiving

    def pending(self) -> bool:
        return bool(self._in) or self._full

    def decode(self, data: bytes, rsv: int, message_final: bool, max_size: int | None) -> bytes:
        if not rsv & _RSV1:
            return data
        if self._stream_ended:
            # The same rule whatever TCP's segmentation: bytes after the final block
            # fail the connection whether they came in the block's read or a later one.
            if data:
                self._reset_input()
                raise RemoteProtocolError("data after the final deflate block", code=1002)
            if message_final:
                self._reset_input()
            return b""
        d = self._decompressor
        if d is None:
            d = self._decompressor = zlib.decompressobj(-self._dwbits)
        inp = self._in + data if self._in else data
        if message_final and not self._tail_added:
            inp += _TAIL
            self._tail_added = True
        limit = self.chunk_size
        if max_size is not None and max_size < limit:
            limit = max_size + 1  # one byte over the allowance proves it is exceeded
        try:
            out = d.decompress(inp, limit)
        except zlib.error as exc:
            self._reset_input()
            raise RemoteProtocolError(f"invalid compressed data: {exc}", code=1007) from None
        if max_size is not None and len(out) > max_size:
            self._reset_input()
            raise RemoteProtocolError("message over the size limit after decompression", code=1009)
        self._in = d.unconsumed_tail
        self._full = len(out) == limit
        if d.eof:
            # The peer ended the deflate stream (BFINAL, §7.2.3.4): only our own tail
            # may follow; the next message starts a new stream.
            rest = d.unused_data
            if rest and not (self._tail_added and _TAIL.endswith(rest)):
                self._reset_input()
                raise RemoteProtocolError("data after the final deflate block", code=1002)
            self._decompressor = None
            self._in = b""
            # Nothing is left inside zlib either, even if this piece filled ``limit``
            # exactly: "full" would promise output that never comes, and the message
            # would stay in forced service with its following frames unread.
            self._full = False
            self._stream_ended = not message_final
        if message_final and not self.pending():
            # message complete
            self._tail_added = False
            if self.remote_no_context_takeover:
                self._decompressor = None
        return out

    def _reset_input(self) -> None:
        self._in = b""
        self._full = False
        self._tail_added = False
        self._stream_ended = False
        self._decompressor = None

    # ------------------------------------------------------------------ sending

    def encode(self, data: bytes, first: bool, final: bool) -> tuple[bytes, int]:
        if first:
            self._compressing = not (final and len(data) < self.min_size)
        if not self._compressing:
            return data, 0
        c = self._compressor
        if c is None:
            c = self._compressor = zlib.compressobj(
                self.level, zlib.DEFLATED, -self._cwbits, self.mem_level
            )
        out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        if final:
            if out.endswith(_TAIL):
                out = out[:-4]
            if self.local_no_context_takeover:
                self._compressor = None
            self._compressing = False
        return out, (_RSV1 if first else 0)


class _Params:
    """The parameters of one offer or response, validated (§7.1)."""

    __slots__ = ("client_bits", "client_nct", "server_bits", "server_nct")

    def __init__(self, offer: ExtensionOffer, *, is_response: bool) -> None:
        seen: set[str] = set()
        self.server_nct = False
        self.client_nct = False
        self.server_bits: int | None = None
        # None: absent; 0: present without a value (offers only); else 8..15
        self.client_bits: int | None = None
        for key, value in offer.params:
            if key not in _KNOWN:
                raise ValueError(f"unknown parameter {key!r}")
            if key in seen:
                raise ValueError(f"duplicate parameter {key!r}")
            seen.add(key)
            if key in _FLAGS:
                if value is not None:
                    raise ValueError(f"{key} takes no value")
                if key == "server_no_context_takeover":
                    self.server_nct = True
                else:
                    self.client_nct = True
                continue
            if value is None:
                if key == "client_max_window_bits" and not is_response:
                    self.client_bits = 0
                    continue
                raise ValueError(f"{key} needs a value")
            bits = _BITS_VALUES.get(value)
            if bits is None:
                raise ValueError(f"invalid {key} value {value[:20]!r}")
            if key == "server_max_window_bits":
                self.server_bits = bits
            else:
                self.client_bits = bits


class PerMessageDeflateFactory(ExtensionFactory):
    """permessage-deflate configuration and negotiation, both roles (RFC 7692 §7.1).

    ``server_no_context_takeover`` / ``client_no_context_takeover``: request that side
    resets its compressor after every message (less memory, worse ratio).
    ``server_max_window_bits`` / ``client_max_window_bits`` (8..15): the largest LZ77
    window that side may use; 15 means no limit is asked for.  A server configured with
    ``client_max_window_bits`` below 15 declines offers from clients that do not
    support the parameter.  ``level`` (default 1, as lws) and ``mem_level`` go to
    ``zlib.compressobj``; messages sent whole and shorter than ``min_size`` bytes are
    not compressed; ``chunk_size`` caps the decoded bytes returned per ``decode`` call
    (the rest is delivered by ``WSConnection.process_pending``).
    """

    name = NAME

    def __init__(
        self,
        *,
        level: int = 1,
        mem_level: int = 8,
        server_max_window_bits: int = 15,
        client_max_window_bits: int = 15,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        min_size: int = 0,
        chunk_size: int = 256 * 1024,
    ) -> None:
        _check_bits("server_max_window_bits", server_max_window_bits)
        _check_bits("client_max_window_bits", client_max_window_bits)
        if not (level == -1 or 0 <= level <= 9):
            raise ValueError(f"level must be -1 or 0..9, not {level!r}")
        if not 1 <= mem_level <= 9:
            raise ValueError(f"mem_level must be 1..9, not {mem_level!r}")
        if min_size < 0 or chunk_size < 1:
            raise ValueError("min_size must be >= 0 and chunk_size >= 1")
        self.level = level
        self.mem_level = mem_level
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.min_size = min_size
        self.chunk_size = chunk_size

    def _build(
        self,
        *,
        local_nct: bool,
        remote_nct: bool,
        local_bits: int,
        remote_bits: int,
        response: ExtensionOffer | None = None,
    ) -> PerMessageDeflate:
        return PerMessageDeflate(
            local_no_context_takeover=local_nct,
            remote_no_context_takeover=remote_nct,
            local_max_window_bits=local_bits,
            remote_max_window_bits=remote_bits,
            level=self.level,
            mem_level=self.mem_level,
            min_size=self.min_size,
            chunk_size=self.chunk_size,
            response=response,
        )

    # ------------------------------------------------------------------ server

    def accept(self, offers: Sequence[ExtensionOffer]) -> PerMessageDeflate | None:
        """Server: the first acceptable ``permessage-deflate`` offer, or None.

        An offer with unknown, duplicate or invalid parameters is declined and the
        next one is tried (§7.1: "decline an offer"; the client lists fallbacks).
        """
        for offer in offers:
            if offer.name != NAME:
                continue
            try:
                p = _Params(offer, is_response=False)
            except ValueError:
                continue
            ext = self._accept_one(p)
            if ext is not None:
                return ext
        return None

    def _accept_one(self, p: _Params) -> PerMessageDeflate | None:
        params: list[tuple[str, str | None]] = []
        # §7.1.1.1: the server may always choose not to take over its own context.
        server_nct = p.server_nct or self.server_no_context_takeover
        if server_nct:
            params.append(("server_no_context_takeover", None))
        # §7.1.1.2: the server may ask it whether or not it was offered; echo an offer.
        client_nct = p.client_nct or self.client_no_context_takeover
        if client_nct:
            params.append(("client_no_context_takeover", None))
        # §7.1.2.1: answer an offered limit with the same or a smaller value; add our
        # own limit when the client did not ask for one.
        server_bits = self.server_max_window_bits
        if p.server_bits is not None:
            server_bits = min(p.server_bits, server_bits)
            params.append(("server_max_window_bits", str(server_bits)))
        elif server_bits < 15:
            params.append(("server_max_window_bits", str(server_bits)))
        # §7.1.2.2: only a client that offered the parameter may be sent it.
        client_bits = 15
        if p.client_bits is None:
            if self.client_max_window_bits < 15:
                return None  # we require a limit this client cannot honour
        elif p.client_bits == 0:
            if self.client_max_window_bits < 15:
                client_bits = self.client_max_window_bits
                params.append(("client_max_window_bits", str(client_bits)))
        else:
            client_bits = min(p.client_bits, self.client_max_window_bits)
            params.append(("client_max_window_bits", str(client_bits)))
        return self._build(
            local_nct=server_nct,
            remote_nct=client_nct,
            local_bits=server_bits,
            remote_bits=client_bits,
            response=ExtensionOffer(NAME, tuple(params)),
        )

    # ------------------------------------------------------------------ client

    def offer(self) -> ExtensionOffer:
        """Client: the request's offer; ``client_max_window_bits`` always says we support it."""
        params: list[tuple[str, str | None]] = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits < 15:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        if self.client_max_window_bits < 15:
            params.append(("client_max_window_bits", str(self.client_max_window_bits)))
        else:
            params.append(("client_max_window_bits", None))
        return ExtensionOffer(NAME, tuple(params))

    def finalize(self, response: ExtensionOffer) -> PerMessageDeflate:
        """Client: check the server's response against our offer (§7.1); build the extension.

        Raises :class:`RemoteProtocolError` when the response is invalid, which fails
        the handshake.
        """
        if response.name != NAME:
            raise RemoteProtocolError(f"unexpected extension {response.name!r}")
        try:
            p = _Params(response, is_response=True)
        except ValueError as exc:
            raise RemoteProtocolError(f"invalid {NAME} response: {exc}") from None
        if self.server_no_context_takeover and not p.server_nct:
            raise RemoteProtocolError(f"{NAME}: server_no_context_takeover was not accepted")
        server_bits = 15
        if self.server_max_window_bits < 15:
            if p.server_bits is None:
                raise RemoteProtocolError(f"{NAME}: server_max_window_bits was not accepted")
            if p.server_bits > self.server_max_window_bits:
                raise RemoteProtocolError(f"{NAME}: server_max_window_bits above the offer")
        if p.server_bits is not None:
            server_bits = p.server_bits
        client_bits = self.client_max_window_bits
        if p.client_bits is not None:
            if p.client_bits > self.client_max_window_bits:
                raise RemoteProtocolError(f"{NAME}: client_max_window_bits above the offer")
            client_bits = p.client_bits
        return self._build(
            local_nct=p.client_nct or self.client_no_context_takeover,
            remote_nct=p.server_nct,
            local_bits=client_bits,
            remote_bits=server_bits,
        )
