"""RFC 6455 §5 frames: opcodes, close codes, serializing frames, and the frame reader."""

from __future__ import annotations

import os
import struct
from enum import IntEnum
from operator import attrgetter
from typing import TYPE_CHECKING, Final

from lwsbridge.core.buffer import FRAME_BUFFERS, FramePool
from lwsbridge.core.errors import RemoteProtocolError
from lwsbridge.core.events import DataReceived, Event
from lwsbridge.core.extensions import Extension
from lwsbridge.core.mask import SPEEDUPS, apply_mask
from lwsbridge.core.utf8 import Utf8Validator, utf8_valid

if TYPE_CHECKING:
    from lwsbridge.core._speedups import FrameBuffer

__all__ = [
    "CONTROL_OPCODES",
    "DATA_OPCODES",
    "FrameReader",
    "Opcode",
    "build_close_payload",
    "close_code_is_valid",
    "encode_frame",
    "parse_close_payload",
]


class Opcode(IntEnum):
    """Frame opcodes (§5.2); 3-7 and 0xB-0xF are reserved."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


DATA_OPCODES = frozenset({Opcode.CONTINUATION, Opcode.TEXT, Opcode.BINARY})
CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})

_PACK_H = struct.Struct("!BB").pack
_PACK_H16 = struct.Struct("!BBH").pack
_PACK_H64 = struct.Struct("!BBQ").pack


def close_code_is_valid(code: int) -> bool:
    """May this code appear in a close frame on the wire? (§7.4.1, §7.4.2, IANA registry)

    1000-1003 and 1007-1014 are defined; 1004 is reserved, 1005/1006/1015 must never be
    sent; 1016-2999 are unassigned; 3000-4999 are for libraries and applications.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def build_close_payload(code: int | None, reason: str = "") -> bytes:
    if code is None:
        return b""
    data = struct.pack("!H", code) + reason.encode("utf-8")
    if len(data) > 125:
        raise ValueError("close reason too long: code + reason must fit 125 bytes")
    return data


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """``(code, reason)`` of a received close frame (§5.5.1, §7.1.5: 1005 if empty).

    Raises :class:`RemoteProtocolError` (1002, or 1007 for a reason not in UTF-8).
    """
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise RemoteProtocolError("close frame with a 1-byte payload", code=1002)
    code = int.from_bytes(payload[:2], "big")
    if not close_code_is_valid(code):
        raise RemoteProtocolError(f"invalid close code {code}", code=1002)
    try:
        return code, payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError("close reason is not valid UTF-8", code=1007) from None


def encode_frame(
    opcode: int,
    payload: bytes,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = False,
    mask_key: bytes | None = None,
) -> list[bytes]:
    """Serialize one frame as ``[header, payload]`` chunks (no copy of a large payload).

    The length is always the minimal encoding (§5.2).  With ``mask`` a fresh random
    key is used per frame (§5.3) unless ``mask_key`` is given.
    """
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        header = _PACK_H(b0, mbit | n)
    elif n < 65536:
        header = _PACK_H16(b0, mbit | 126, n)
    else:
        header = _PACK_H64(b0, mbit | 127, n)
    # Never an empty chunk: b"" in an output list means end of stream.
    if mask:
        key = mask_key if mask_key is not None else os.urandom(4)
        if n < 1024:
            return [header + key + apply_mask(payload, key)]
        return [header + key, apply_mask(payload, key)]
    if n < 1024:
        # Small frames: one chunk is cheaper to write than two.
        return [header + payload]
    return [header, payload]


# The reader compares opcodes as plain ints (an IntEnum compare costs more per frame);
# these are the same named values.
_CONTINUATION: Final = int(Opcode.CONTINUATION)
_TEXT: Final = int(Opcode.TEXT)
_BINARY: Final = int(Opcode.BINARY)
_PONG: Final = int(Opcode.PONG)
_CONTROL_BIT: Final = int(Opcode.CLOSE)  # §5.2: control opcodes have their top bit (0x8) set


_UNMASK_STEP = 16 * 1024  # pure-Python unmasking of a gathered frame, per step


def _payload(buf: bytearray, start: int, end: int, mask: bytes) -> bytes:
    """``buf[start:end]`` unmasked with ``mask`` (b"": not masked), copied out once."""
    if end - start >= 1024:
        # Through a view released at once: a live view would forbid resizing buf.
        with memoryview(buf) as mv, mv[start:end] as view:
            return apply_mask(view, mask) if mask else bytes(view)
    return apply_mask(buf[start:end], mask) if mask else bytes(buf[start:end])


class FrameReader:
    """Bytes -> frames for one end of a WebSocket (RFC 6455 §5), with partial delivery.

    :meth:`read` parses the front of a bytearray in place: it checks every header
    (masking by role, reserved bits and opcodes, control frame rules, fragmentation,
    the size limits), hands out data payload as :class:`DataReceived` pieces as soon as
    bytes arrive (text validated as UTF-8, compressed messages run through the
    ``extension``), and stops at each control frame, returning it whole for the caller
    to act on (pong, close).  It raises :class:`RemoteProtocolError` with the close
    code for anything the peer got wrong.

    State kept between calls: the frame whose payload is being delivered (remaining
    bytes, FIN, the mask rotated to the next byte) and the message in progress (opcode,
    RSV bits, size, UTF-8 validator, what the extension holds back).

    With a ``pool`` (:class:`~lwsbridge.core.buffer.FramePool`), an uncompressed data
    frame whose size is within the pool's bounds is gathered in a buffer lent by the
    pool, over as many reads as it takes, and delivered in one piece: unmasked once
    into a fresh ``bytes``, then the buffer goes back.  With the C speedup the buffer
    is that ``bytes`` itself (``FramePool.take_bytes``): unmasked in place, no copy.
    A transport may read such a frame's payload straight into the buffer
    (:meth:`gather_target`, :meth:`gathered`).
    Text is validated when the frame is complete, before any of it is delivered.
    """

    __slots__ = (
        "_client",
        "_frame_fin",
        "_frame_mask",
        "_gather",
        "_gather_key",
        "_gather_pos",
        "_held_final",
        "_in_frame",
        "_msg_decoded",
        "_msg_delivered",
        "_msg_opcode",
        "_msg_rsv",
        "_msg_size",
        "_remaining",
        "_utf8",
        "extension",
        "held",
        "max_frame_size",
        "max_message_size",
        "pool",
    )

    def __init__(
        self,
        *,
        client: bool,
        max_message_size: int = 1 << 20,
        max_frame_size: int = 0,
        extension: Extension | None = None,
        pool: FramePool | None = None,
    ) -> None:
        self._client = client  # frames come from a server: they must not be masked
        self.max_message_size = max_message_size  # 0: unlimited
        self.max_frame_size = max_frame_size  # 0: only the message limit
        self.extension = extension
        # the frame being received
        self._in_frame = False  # payload of a data frame is being delivered
        self._remaining = 0  # payload bytes of that frame still to come
        self._frame_fin = False
        self._frame_mask = b""  # mask rotated to where the next payload byte starts
        # the message being received
        self._msg_opcode = 0  # 0: none in progress; else TEXT or BINARY
        self._msg_rsv = 0
        self._msg_size = 0
        self._msg_delivered = False  # a DataReceived of this message went out already
        self._utf8: Utf8Validator | None = None  # text message being received
        self._msg_decoded = 0  # bytes the extension has produced for this message
        #: the extension holds decoded output back: call :meth:`resume`, input waits
        #: (a plain attribute, read on every service pass)
        self.held = False
        self._held_final = False  # ... and it has all of the message's input already
        #: where large frames are gathered whole (None: always delivered in pieces)
        self.pool = pool
        # lent by the pool for the frame in progress
        self._gather: bytearray | FrameBuffer | None = None
        self._gather_pos = 0  # payload bytes of that frame in it so far
        self._gather_key = b""  # the frame's mask, from its first byte

    @property
    def remaining(self) -> int:
        """Payload bytes of the current data frame still to come."""
        return self._remaining

    @property
    def in_payload(self) -> bool:
        """The next input byte is payload of a data frame (and no output is held back)."""
        return self._in_frame and not self.held

    if TYPE_CHECKING:

        @property
        def in_frame(self) -> bool: ...

    else:
        # A C getter (no Python frame): the receiving side tests it on every read.
        in_frame = property(
            attrgetter("_in_frame"),
            doc="A data frame's payload is in progress (:attr:`in_payload` less ``held``).",
        )

    def read_payload(self, data: bytes | bytearray | memoryview, events: list[Event]) -> int:
        """Deliver the front of ``data`` as payload of the data frame in progress.

        The same delivery as :meth:`read` makes for payload bytes, without the bytes
        first going through the receive buffer: the caller checked :attr:`in_payload`
        and that nothing else is buffered.  Returns how many bytes of ``data`` were
        payload (at most :attr:`remaining`); the rest is for :meth:`read`.
        """
        take = self._remaining if self._remaining <= len(data) else len(data)
        if take == 0 and self._remaining:
            return 0
        if self._gather is not None:
            with memoryview(data) as mv, mv[:take] as view:
                self._gather_copy(view, events)
            return take
        mask = self._frame_mask
        with memoryview(data) as mv, mv[:take] as view:
            chunk = apply_mask(view, mask) if mask else bytes(view)
        if mask:
            r = take & 3
            if r:
                self._frame_mask = mask[r:] + mask[:r]
        self._remaining -= take
        self._deliver(chunk, events)
        return take

    def read(self, buf: bytearray, events: list[Event]) -> tuple[int, bytes] | None:
        """Parse ``buf`` from the front, appending data pieces to ``events``.

        Returns ``(opcode, payload)`` of the first control frame met (consumed from
        ``buf``), or None when the input runs out or the extension holds output back.
        Consumed bytes are removed with one ``del`` at the end: no per-byte Python loop,
        no copy of the unparsed rest.
        """
        n = len(buf)
        pos = 0
        client = self._client
        append = events.append
        try:
            while not self.held:
                if self._in_frame:
                    # Payload of a data frame: deliver what is here (RFC 6455 §5.4 lets
                    # us; lws delivers it the same way).
                    take = self._remaining if self._remaining <= n - pos else n - pos
                    if take == 0 and self._remaining:
                        return None
                    if self._gather is not None:
                        with memoryview(buf) as mv, mv[pos : pos + take] as view:
                            self._gather_copy(view, events)
                        pos += take
                        continue
                    mask = self._frame_mask
                    chunk = _payload(buf, pos, pos + take, mask)
                    pos += take
                    if mask:
                        r = take & 3
                        if r:
                            self._frame_mask = mask[r:] + mask[:r]
                    self._remaining -= take
                    self._deliver(chunk, events)
                    continue
                if n - pos < 2:
                    return None
                b0 = buf[pos]
                b1 = buf[pos + 1]
                length = b1 & 0x7F
                hlen = 2
                if length == 126:
                    hlen = 4
                elif length == 127:
                    hlen = 10
                masked = b1 & 0x80
                if masked:
                    hlen += 4
                if n - pos < hlen:
                    return None
                if length == 126:
                    length = (buf[pos + 2] << 8) | buf[pos + 3]
                elif length == 127:
                    length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                    if length >> 63:
                        raise RemoteProtocolError("frame length has its top bit set", code=1002)
                opcode = b0 & 0x0F
                fin = b0 & 0x80
                rsv = b0 & 0x70
                # §5.1: clients must mask, servers must not.
                if client:
                    if masked:
                        raise RemoteProtocolError("masked frame from a server", code=1002)
                elif not masked:
                    raise RemoteProtocolError("unmasked frame from a client", code=1002)
                if opcode & _CONTROL_BIT:
                    # Control frame (§5.5): whole, small, unfragmented, no RSV.
                    if opcode > _PONG:
                        raise RemoteProtocolError(f"reserved opcode {opcode:#x}", code=1002)
                    self._check_control(fin, length, rsv)
                    if n - pos < hlen + length:
                        return None  # control frames are held until whole
                    payload = bytes(buf[pos + hlen : pos + hlen + length])
                    if masked:
                        payload = apply_mask(payload, bytes(buf[pos + hlen - 4 : pos + hlen]))
                    pos += hlen + length
                    return opcode, payload
                # Data frame (§5.6) and fragmentation rules (§5.4).
                if opcode == _CONTINUATION:
                    self._check_continuation(rsv)
                elif opcode <= _BINARY:  # TEXT or BINARY (0 was taken above)
                    if self._msg_opcode:
                        raise RemoteProtocolError(
                            "new data frame inside a fragmented message", code=1002
                        )
                    if rsv:
                        self._check_rsv(rsv)
                    elif fin and n - pos - hlen >= length:
                        # The common case: a whole one-frame message is in the buffer.
                        # Deliver it in this pass, without the per-message state.
                        if (self.max_frame_size and length > self.max_frame_size) or (
                            self.max_message_size and length > self.max_message_size
                        ):
                            raise RemoteProtocolError(
                                f"message of {length} bytes over the limit", code=1009
                            )
                        start = pos + hlen
                        pos = start + length
                        if masked and length < 1024:  # _payload's small case, in place
                            chunk = apply_mask(buf[start:pos], bytes(buf[start - 4 : start]))
                        else:
                            key = bytes(buf[start - 4 : start]) if masked else b""
                            chunk = _payload(buf, start, pos, key)
                        if opcode == _TEXT and not utf8_valid(chunk):  # §8.1
                            raise RemoteProtocolError("invalid UTF-8 in text message", code=1007)
                        append(DataReceived(chunk, opcode == _BINARY, True, True, 0, True))
                        continue
                    self._start_message(opcode, rsv)
                else:
                    raise RemoteProtocolError(f"reserved opcode {opcode:#x}", code=1002)
                self._start_frame(length, bool(fin))
                self._frame_mask = bytes(buf[pos + hlen - 4 : pos + hlen]) if masked else b""
                pos += hlen
                pool = self.pool
                if (
                    pool is not None
                    and pool.min_size <= length <= pool.max_size
                    and not self._msg_rsv  # compressed: the extension takes pieces
                ):
                    gather = pool.take_bytes(length) if FRAME_BUFFERS else pool.take(length)
                    if gather is not None:
                        self._gather = gather
                        self._gather_pos = 0
                        self._gather_key = self._frame_mask
                if length == 0:
                    self._deliver(b"", events)
            return None
        finally:
            if pos:
                del buf[:pos]

    # ------------------------------------------------------------------ gathering

    def gather_target(self) -> memoryview | None:
        """Where the rest of the frame in progress may be read to directly, or None.

        A writable view of the gathering buffer from the next payload byte to the
        frame's end; report what was written with :meth:`gathered`, and do not keep
        the view past that call.
        """
        gather = self._gather
        if gather is None or self.held:
            return None
        pos = self._gather_pos
        return memoryview(gather)[pos : pos + self._remaining]

    def gathered(self, n: int, events: list[Event]) -> None:
        """``n`` payload bytes were written at the front of :meth:`gather_target`'s view."""
        if self._gather is None or not 0 < n <= self._remaining:
            raise ValueError("gathered() without a frame being gathered, or past its end")
        self._gather_pos += n
        self._remaining -= n
        if self._remaining == 0:
            self._gather_done(events)

    def release(self) -> None:
        """Input is dropped (the connection failed or closed): give the buffer back."""
        gather = self._gather
        if gather is not None:
            self._gather = None
            self._in_frame = False
            self._remaining = 0
            assert self.pool is not None
            self.pool.give(gather)

    def _gather_copy(self, view: memoryview, events: list[Event]) -> None:
        gather = self._gather
        assert gather is not None
        pos = self._gather_pos
        end = pos + len(view)
        with memoryview(gather) as g:
            g[pos:end] = view
        self._gather_pos = end
        self._remaining -= len(view)
        if self._remaining == 0:
            self._gather_done(events)

    def _gather_done(self, events: list[Event]) -> None:
        """The whole frame is in the buffer: unmask it out, give the buffer back, deliver."""
        gather = self._gather
        assert gather is not None and self.pool is not None
        key = self._gather_key
        if not isinstance(gather, bytearray):
            # A FrameBuffer: exactly the frame's size, unmasked in place into the bytes
            # delivered (no view of it is alive: gather_target's users release theirs).
            chunk = gather.take(key)
            self._gather = None
            self.pool.give(gather)
            self._deliver(chunk, events)
            return
        n = self._gather_pos
        with memoryview(gather) as g, g[:n] as view:
            if key and not SPEEDUPS:
                # The pure-Python unmask makes several temporaries the size of its input:
                # in place, in steps (of a multiple of 4 bytes, so the key stays aligned),
                # they stay small and the heap does not grow and shrink for each frame.
                for a in range(0, n, _UNMASK_STEP):
                    g[a : a + _UNMASK_STEP] = apply_mask(g[a : a + _UNMASK_STEP], key)
                key = b""
            chunk = apply_mask(view, key) if key else bytes(view)
        self._gather = None
        self.pool.give(gather)
        self._deliver(chunk, events)

    def resume(self, events: list[Event]) -> None:
        """Deliver the next piece of output the extension held back (one event at most)."""
        chunk, final = self._decode(b"", self._held_final)
        if chunk or final:
            self._emit_data(chunk, final, self._remaining, events)

    # ------------------------------------------------------------------ header rules

    @staticmethod
    def _check_control(fin: int, length: int, rsv: int) -> None:
        if not fin:
            raise RemoteProtocolError("fragmented control frame", code=1002)
        if length > 125:
            raise RemoteProtocolError("control frame payload over 125 bytes", code=1002)
        if rsv:
            raise RemoteProtocolError("RSV bits set on a control frame", code=1002)

    def _check_continuation(self, rsv: int) -> None:
        if not self._msg_opcode:
            raise RemoteProtocolError("continuation frame without a message", code=1002)
        if rsv:
            # RFC 7692 §6: RSV1 only on the first frame of a message.
            raise RemoteProtocolError("RSV bits set on a continuation frame", code=1002)

    def _check_rsv(self, rsv: int) -> None:
        ext = self.extension
        if ext is None or (ext.rsv_mask & rsv) != rsv:
            raise RemoteProtocolError("RSV bits set without an extension", code=1002)

    def _start_message(self, opcode: int, rsv: int) -> None:
        self._msg_opcode = opcode
        self._msg_rsv = rsv
        self._msg_size = 0
        self._msg_delivered = False
        if opcode == _TEXT:
            self._utf8 = Utf8Validator()

    def _start_frame(self, length: int, fin: bool) -> None:
        """Check the limits for a data frame whose payload follows, and expect it."""
        if self.max_frame_size and length > self.max_frame_size:
            raise RemoteProtocolError(
                f"frame of {length} bytes over the {self.max_frame_size} limit", code=1009
            )
        self._msg_size += length
        if (
            self.max_message_size
            and self._msg_size > self.max_message_size
            and not self._msg_rsv  # compressed: checked on the inflated size
        ):
            raise RemoteProtocolError(
                f"message over the {self.max_message_size} byte limit", code=1009
            )
        self._frame_fin = fin
        self._remaining = length
        self._in_frame = True

    # ------------------------------------------------------------------ payload out

    def _deliver(self, chunk: bytes, events: list[Event]) -> None:
        """Hand out one piece of the current data frame."""
        remaining = self._remaining
        frame_done = remaining == 0
        if frame_done:
            self._in_frame = False
        final = frame_done and self._frame_fin
        if not chunk and not final and (self._msg_delivered or not frame_done):
            return  # nothing to say: an empty middle frame
        if self._msg_rsv:
            chunk, final = self._decode(chunk, final)
            if not chunk and not final and self._msg_delivered:
                return  # the extension produced nothing from this piece yet
        self._emit_data(chunk, final, remaining, events)

    def _decode(self, chunk: bytes, final: bool) -> tuple[bytes, bool]:
        """Run a piece of a compressed message through the extension.

        ``final`` says the message's input is complete; the returned flag says the
        message's output is (False while the extension still holds some back).
        """
        ext = self.extension
        assert ext is not None
        allowed = self.max_message_size - self._msg_decoded if self.max_message_size else None
        chunk = ext.decode(chunk, self._msg_rsv, final, allowed)
        self._msg_decoded += len(chunk)
        if ext.pending():
            self.held = True
            self._held_final = final
            return chunk, False
        self.held = False
        return chunk, final

    def _emit_data(self, chunk: bytes, final: bool, remaining: int, events: list[Event]) -> None:
        # §8.1: fail fast on invalid UTF-8; pieces may end mid-character.  ASCII pieces
        # with no partial character pending need no decoding at all.
        v = self._utf8
        if (
            v is not None
            and (final or v.pending or not chunk.isascii())
            and not v.feed(chunk, final)
        ):
            raise RemoteProtocolError("invalid UTF-8 in text message", code=1007)
        first = not self._msg_delivered
        self._msg_delivered = True
        binary = self._msg_opcode == _BINARY
        if final:
            self._msg_opcode = 0
            self._msg_rsv = 0
            self._msg_decoded = 0
            self._utf8 = None
        events.append(DataReceived(chunk, binary, first, final, remaining, self._frame_fin))
