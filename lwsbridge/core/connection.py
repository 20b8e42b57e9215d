"""One WebSocket connection, either role, as a sans-IO state machine: bytes in, events out.

What this class does for you: HTTP/1.1 head parsing and the RFC 6455 opening
handshake, frame parsing with partial delivery, UTF-8 validation, size limits, automatic
pong and close replies, the close handshake, and failing the connection with the
right close code.

What it will not do: touch a socket, a clock or a loop.  You feed it bytes with
``receive_data`` / ``receive_eof``, take events with ``events()``, and write what
``data_to_send()`` returns -- a ``b""`` chunk in it means "close the transport now".
Timeouts (handshake, close, ping) are yours: call ``abort()`` when one expires.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from lwsbridge.core.buffer import ReceiveBuffer
from lwsbridge.core.errors import LocalProtocolError, RemoteProtocolError
from lwsbridge.core.events import (
    Closed,
    CloseReceived,
    ConnectionFailed,
    DataReceived,
    Established,
    Event,
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
from lwsbridge.core.frames import (
    Opcode,
    build_close_payload,
    close_code_is_valid,
    encode_frame,
)
from lwsbridge.core.handshake import (
    HeaderList,
    build_accept,
    build_client_request,
    build_reject,
    check_response,
    is_websocket_upgrade,
    make_key,
    validate_upgrade,
)
from lwsbridge.core.http11 import REASONS, build_head, parse_request_head, parse_response_head
from lwsbridge.core.mask import apply_mask
from lwsbridge.core.state import Role, State, transition
from lwsbridge.core.utf8 import Utf8Validator, utf8_valid

__all__ = ["WSConnection"]

_EOF = b""
_WS_STATES = (State.OPEN, State.LOCAL_CLOSING)


def _payload(buf: bytearray, start: int, end: int, mask: bytes) -> bytes:
    """``buf[start:end]`` unmasked with ``mask`` (b"": not masked), copied out once."""
    if end - start >= 1024:
        # Through a view released at once: a live view would forbid resizing buf.
        with memoryview(buf) as mv, mv[start:end] as view:
            return apply_mask(view, mask) if mask else bytes(view)
    return apply_mask(buf[start:end], mask) if mask else bytes(buf[start:end])


# RFC 9110 §5.6.2 tchar: what a request line's method must start with.
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def _check_request_start(data: bytearray) -> None:
    """Reject at the first byte what cannot be an HTTP request (not at the timeout)."""
    for b in data[:3]:
        if b in (0x0D, 0x0A):
            continue  # RFC 9112 §2.2: empty lines before the request line are allowed
        if b == 0x16:
            raise RemoteProtocolError("TLS handshake on a plain (non-TLS) port", status=400)
        if b not in _TCHAR:
            raise RemoteProtocolError(f"not an HTTP request (first byte {b:#04x})", status=400)
        return


class WSConnection:
    """A WebSocket connection in the ``SERVER`` or ``CLIENT`` role (lws: one ``wsi``).

    Limits: ``max_message_size`` (default 1 MiB, 0 = unlimited) and ``max_frame_size``
    (default 0 = only the message limit) close with 1009 as soon as a frame header
    announces too much, before any of its payload is buffered; ``max_head_size``
    (default 8 KiB) answers 431.  ``auto_pong`` answers pings (the Ping event is
    emitted either way).
    """

    # One object per connection: slots keep idle connections small (no __dict__).
    __slots__ = (
        "_body_remaining",
        "_buf",
        "_client",
        "_close_received",
        "_close_sent",
        "_closed_emitted",
        "_events",
        "_frame_fin",
        "_frame_mask",
        "_held",
        "_held_final",
        "_in_frame",
        "_keep_alive",
        "_key",
        "_msg_decoded",
        "_msg_delivered",
        "_msg_opcode",
        "_msg_rsv",
        "_msg_size",
        "_offered_extensions",
        "_offered_protocols",
        "_out",
        "_out_in_message",
        "_remaining",
        "_request_headers",
        "_responding",
        "_urandom",
        "_utf8",
        "auto_pong",
        "extension",
        "max_frame_size",
        "max_head_size",
        "max_message_size",
        "role",
        "state",
        "subprotocol",
    )

    def __init__(
        self,
        role: Role,
        *,
        max_message_size: int = 1 << 20,
        max_frame_size: int = 0,
        max_head_size: int = 8192,
        auto_pong: bool = True,
        mask_key_source: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.role = role
        self.state = State.HTTP_HEAD if role is Role.SERVER else State.IDLE
        self.max_message_size = max_message_size
        self.max_frame_size = max_frame_size
        self.max_head_size = max_head_size
        self.auto_pong = auto_pong
        self._urandom = mask_key_source
        self._client = role is Role.CLIENT
        self._buf = ReceiveBuffer()
        self._events: list[Event] = []
        self._out: list[bytes] = []
        # handshake
        self._key = b""
        self._offered_protocols: tuple[str, ...] = ()
        self._offered_extensions: dict[str, ExtensionFactory] = {}
        self._request_headers: Headers | None = None
        self._keep_alive = False
        self._body_remaining = 0
        self._responding = False  # an HTTP response head went out, its body may follow
        self.subprotocol: str | None = None
        self.extension: Extension | None = None
        # frame parser: the frame being received
        self._in_frame = False  # payload of a data frame is being delivered
        self._remaining = 0  # payload bytes of that frame still to come
        self._frame_fin = False
        self._frame_mask = b""  # mask rotated to where the next payload byte starts
        # message being received
        self._msg_opcode = 0  # 0: none in progress; else TEXT or BINARY
        self._msg_rsv = 0
        self._msg_size = 0
        self._msg_delivered = False  # a DataReceived of this message went out already
        self._utf8: Utf8Validator | None = None  # text message being received
        self._msg_decoded = 0  # bytes an extension has produced for this message
        self._held = False  # the extension holds decoded output: input parsing waits
        self._held_final = False  # ... and it has all of the message's input already
        # message being sent
        self._out_in_message = False
        self._close_sent = False
        self._close_received: CloseReceived | None = None
        self._closed_emitted = False

    # ------------------------------------------------------------------ output

    def data_to_send(self) -> list[bytes]:
        """Take the chunks to write, in order.  A ``b""`` chunk means: close the transport."""
        out, self._out = self._out, []
        return out

    def events(self) -> list[Event]:
        """Take the events produced since the last call, in order."""
        ev, self._events = self._events, []
        return ev

    @property
    def out_in_message(self) -> bool:
        """A fragmented message we send is in progress (its next frame is a continuation)."""
        return self._out_in_message

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    @property
    def request_headers(self) -> Headers | None:
        """The peer's handshake headers (request for a server, response for a client)."""
        return self._request_headers

    def pending(self) -> bool:
        """True if there is work to do without new input (lws: forced service).

        That is the case when an extension holds decoded output back (``ext.pending()``);
        call :meth:`process_pending` then.  (Input held while the caller answers a
        request is parsed as soon as the caller answers.)
        """
        return self._held and self.state in _WS_STATES

    def process_pending(self) -> None:
        """Forced service: deliver the next piece of output the extension held back.

        An extension (permessage-deflate) returns at most a bounded piece of decoded
        data per call; while it holds more, frame parsing stops (input stays in the
        buffer, control frames included, so the order of events is kept) and
        :meth:`pending` is True.  Each call emits at most one more
        :class:`DataReceived`; once nothing is held, buffered input is parsed again.
        Never raises for anything the peer sent.
        """
        if not self._held or self.state not in _WS_STATES:
            return
        try:
            chunk, final = self._decode(b"", self._held_final)
            if chunk or final:
                self._emit_data(chunk, final, self._remaining)
            if not self._held and self._buf:
                self._receive_frames()
        except RemoteProtocolError as exc:
            self._fail(exc)

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the peer.  Never raises for anything the peer sends."""
        if self.state is State.CLOSED:
            return  # RFC 6455 §7.1.1 / §5.5.1: input after the close is ignored
        if data:
            self._buf.append(data)
        self._process()

    def receive_eof(self) -> None:
        """The peer closed its side (TCP FIN) or the transport broke."""
        if self.state is State.CLOSED:
            return
        self._buf.clear()
        self.state = transition(self.role, self.state, "eof")
        self._emit_closed(1006, "connection closed without a close frame", clean=False)

    def _process(self) -> None:
        try:
            state = self.state
            if state in _WS_STATES:
                self._receive_frames()
            elif state is State.HTTP_HEAD:
                if self._client:
                    self._receive_response_head()
                else:
                    self._receive_request_head()
            elif state is State.HTTP_RESPONDING and self._body_remaining:
                self._receive_body()
            # UPGRADE_PENDING / HTTP_RESPONDING / IDLE: input waits in the buffer.
        except RemoteProtocolError as exc:
            self._fail(exc)

    # ------------------------------------------------------------------ failing

    def _fail(self, exc: RemoteProtocolError) -> None:
        """Peer misbehaved: answer with the right code and end the connection."""
        state = self.state
        if state is State.CLOSED:
            return
        if state is State.HTTP_HEAD and not self._client:
            self._buf.clear()
            self._out.append(build_reject(exc.status, exc.reason))
            self._out.append(_EOF)
            self.state = transition(self.role, state, "bad_request")
            self._events.append(RequestRejected(exc.status, exc.reason))
            self._emit_closed(1006, f"HTTP {exc.status}: {exc.reason}", clean=False)
            return
        if state is State.HTTP_HEAD and self._client:
            self._buf.clear()
            self._out.append(_EOF)
            self.state = transition(self.role, state, "response_bad")
            status = exc.status if exc.status != 400 else None
            self._events.append(HandshakeFailed(exc.reason, status))
            self._emit_closed(1006, exc.reason, clean=False)
            return
        # RFC 6455 §7.1.7: send a close frame with the code (unless we did), then close.
        self._buf.clear()
        self._held = False
        if state is State.OPEN and not self._close_sent:
            self._send_close_frame(exc.code, exc.reason[:100])
        self._out.append(_EOF)
        self.state = transition(self.role, state, "fail")
        self._events.append(ConnectionFailed(exc.code, exc.reason))
        self._emit_closed(exc.code, exc.reason, clean=False)

    def _emit_closed(self, code: int, reason: str, clean: bool) -> None:
        if not self._closed_emitted:
            self._closed_emitted = True
            self._events.append(Closed(code, reason, clean))

    def abort(self, reason: str = "aborted") -> None:
        """End the connection now without a close handshake (timeouts, transport errors)."""
        if self.state is State.CLOSED:
            return
        self._buf.clear()
        self.state = transition(self.role, self.state, "abort")
        self._out.append(_EOF)
        self._emit_closed(1006, reason, clean=False)

    # ------------------------------------------------------------------ server handshake

    def _receive_request_head(self) -> None:
        buf = self._buf
        end = buf.find_head_end()
        if end < 0:
            if len(buf) > self.max_head_size:
                raise RemoteProtocolError(
                    f"request head larger than {self.max_head_size} bytes", status=431
                )
            _check_request_start(buf.data)
            return
        if end > self.max_head_size:
            raise RemoteProtocolError(
                f"request head larger than {self.max_head_size} bytes", status=431
            )
        head = buf.consume(end)
        method, target, version, headers = parse_request_head(head)
        if is_websocket_upgrade(headers):
            key, protocols, extensions = validate_upgrade(method, version, headers)
            self._key = key
            self._request_headers = headers
            self.state = transition(self.role, self.state, "upgrade_request")
            self._events.append(UpgradeRequest(target, headers, key, protocols, extensions))
            return
        # A plain HTTP request (RFC 9112 §9.3: 1.1 is persistent unless "close").
        conn_tokens = [t.lower() for t in headers.get_list(b"connection")]
        keep_alive = (
            b"close" not in conn_tokens if version >= (1, 1) else b"keep-alive" in conn_tokens
        )
        if b"transfer-encoding" in headers:
            raise RemoteProtocolError("chunked request bodies are not supported", status=501)
        lengths = headers.get_all(b"content-length")
        length = 0
        if lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit():
                raise RemoteProtocolError("invalid Content-Length", status=400)
            length = int(lengths[0])
        self._keep_alive = keep_alive
        self._body_remaining = length
        self._request_headers = headers
        self.state = transition(self.role, self.state, "http_request")
        self._events.append(HTTPRequest(method, target, headers, keep_alive, length))
        if length:
            self._receive_body()

    def _receive_body(self) -> None:
        buf = self._buf
        take = min(len(buf), self._body_remaining)
        if take:
            self._body_remaining -= take
            self._events.append(HTTPBody(buf.consume(take), self._body_remaining == 0))

    def accept(
        self,
        subprotocol: str | None = None,
        extensions: Sequence[Extension] = (),
        extra_headers: HeaderList = (),
    ) -> None:
        """Server: accept the pending :class:`UpgradeRequest` (lws: the 101 it sends).

        ``subprotocol`` must be one the client offered.  Emits :class:`Established`.
        """
        if self.state is State.UPGRADE_PENDING and self._request_headers is not None:
            offered = self._request_headers.get_list(b"sec-websocket-protocol")
            if subprotocol is not None and subprotocol.encode("latin-1") not in offered:
                raise LocalProtocolError(f"subprotocol {subprotocol!r} was not offered")
        if len(extensions) > 1:
            raise LocalProtocolError("only one extension at a time is supported")
        state = transition(self.role, self.state, "accept")
        responses = [e.response() for e in extensions]
        try:
            response = build_accept(self._key, subprotocol, responses, extra_headers)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        self.state = state
        self.extension = extensions[0] if extensions else None
        self.subprotocol = subprotocol
        self._out.append(response)
        headers = self._request_headers or Headers()
        self._events.append(Established(subprotocol, tuple(responses), headers))
        if self._buf:
            self._process()

    def reject(self, status: int = 403, reason: str = "", extra_headers: HeaderList = ()) -> None:
        """Server: refuse the pending upgrade with an HTTP error and close."""
        state = transition(self.role, self.state, "reject")
        try:
            response = build_reject(status, reason or "rejected", extra_headers)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        self.state = state
        self._buf.clear()
        self._out.append(response)
        self._out.append(_EOF)
        self._emit_closed(1006, f"rejected with HTTP {status}", clean=False)

    def send_http_response(
        self,
        status: int,
        headers: HeaderList = (),
        body: bytes = b"",
        *,
        end: bool = True,
        reason: str | None = None,
    ) -> None:
        """Server: answer a plain :class:`HTTPRequest`.

        ``headers`` must carry ``Content-Length`` when ``end`` is False (the body then
        follows with ``send_http_body``); with ``end`` it is added for ``body``.
        """
        if self.state is not State.HTTP_RESPONDING or self._responding:
            raise LocalProtocolError("no HTTP request is waiting for a response")
        fields = list(headers)
        names = {
            (n.lower() if isinstance(n, str) else n.decode("latin-1").lower()) for n, _ in fields
        }
        if end and "content-length" not in names:
            fields.append(("Content-Length", str(len(body))))
        if not self._keep_alive and "connection" not in names:
            fields.append(("Connection", "close"))
        phrase = reason if reason is not None else REASONS.get(status, "")
        try:
            head = build_head(f"HTTP/1.1 {status} {phrase}", fields)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        self._out.append(head)
        if body:
            self._out.append(body)
        self._responding = True
        if end:
            self._response_done()

    def send_http_body(self, data: bytes, *, end: bool = False) -> None:
        """Server: more of a response body begun with ``send_http_response(end=False)``."""
        if self.state is not State.HTTP_RESPONDING or not self._responding:
            raise LocalProtocolError("no HTTP response is in progress")
        if data:
            self._out.append(data)
        if end:
            self._response_done()

    def _response_done(self) -> None:
        self._responding = False
        if self._keep_alive and not self._body_remaining:
            self.state = transition(self.role, self.state, "response_keep_alive")
            self._request_headers = None
            if self._buf:
                self._process()
        else:
            self.state = transition(self.role, self.state, "response_close")
            self._buf.clear()
            self._out.append(_EOF)
            self._emit_closed(1000, "HTTP response complete", clean=True)

    # ------------------------------------------------------------------ client handshake

    def initiate(
        self,
        host: str,
        target: str = "/",
        subprotocols: Sequence[str] = (),
        extensions: Sequence[ExtensionFactory] = (),
        origin: str | None = None,
        extra_headers: HeaderList = (),
    ) -> None:
        """Client: send the opening handshake (lws: ``lws_client_connect_via_info``'s request)."""
        state = transition(self.role, self.state, "initiate")
        key = make_key()
        offers = [f.offer() for f in extensions]
        try:
            request = build_client_request(
                host, target, key, subprotocols, offers, origin, extra_headers
            )
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        self.state = state
        self._key = key
        self._offered_protocols = tuple(subprotocols)
        self._offered_extensions = {f.name: f for f in extensions}
        self._out.append(request)

    def _receive_response_head(self) -> None:
        buf = self._buf
        end = buf.find_head_end()
        if end < 0:
            if len(buf) > self.max_head_size:
                raise RemoteProtocolError(f"response head larger than {self.max_head_size} bytes")
            # Fail at once on a peer that is not speaking HTTP, not at the timeout.
            start = bytes(buf.data[:5])
            if not b"HTTP/".startswith(start):
                raise RemoteProtocolError(f"response does not start with HTTP/: {start!r}")
            return
        if end > self.max_head_size:
            raise RemoteProtocolError(f"response head larger than {self.max_head_size} bytes")
        head = buf.consume(end)
        _version, status, _reason, headers = parse_response_head(head)
        self._request_headers = headers
        try:
            subprotocol, accepted = check_response(
                status,
                headers,
                self._key,
                self._offered_protocols,
                list(self._offered_extensions),
            )
            exts = [self._offered_extensions[a.name].finalize(a) for a in accepted]
            if len(exts) > 1:
                raise RemoteProtocolError("more than one extension accepted")
        except RemoteProtocolError as exc:
            self._buf.clear()
            self._out.append(_EOF)
            self.state = transition(self.role, self.state, "response_bad")
            self._events.append(HandshakeFailed(exc.reason, status, headers))
            self._emit_closed(1006, exc.reason, clean=False)
            return
        self.subprotocol = subprotocol
        self.extension = exts[0] if exts else None
        self.state = transition(self.role, self.state, "response_101")
        self._events.append(Established(subprotocol, accepted, headers))
        if self._buf:
            self._receive_frames()

    # ------------------------------------------------------------------ frames in

    def _receive_frames(self) -> None:
        """Parse every complete frame header and deliver every payload byte available.

        Works on the buffer in place with one ``del`` at the end: no per-byte Python
        loop, no copy of the unparsed rest.
        """
        buf = self._buf.data
        n = len(buf)
        pos = 0
        client = self._client
        try:
            while self.state in _WS_STATES and not self._held:
                if self._in_frame:
                    # Payload of a data frame: deliver what is here (RFC 6455 §5.4 lets
                    # us; lws delivers it the same way).
                    take = self._remaining if self._remaining <= n - pos else n - pos
                    if take == 0 and self._remaining:
                        break
                    mask = self._frame_mask
                    chunk = _payload(buf, pos, pos + take, mask)
                    pos += take
                    if mask:
                        r = take & 3
                        if r:
                            self._frame_mask = mask[r:] + mask[:r]
                    self._remaining -= take
                    self._deliver(chunk)
                    continue
                if n - pos < 2:
                    break
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
                    break
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
                if opcode >= 8:
                    # Control frame (§5.5): whole, small, unfragmented, no RSV.
                    if opcode > 0xA:
                        raise RemoteProtocolError(f"reserved opcode {opcode:#x}", code=1002)
                    if not fin:
                        raise RemoteProtocolError("fragmented control frame", code=1002)
                    if length > 125:
                        raise RemoteProtocolError("control frame payload over 125 bytes", code=1002)
                    if rsv:
                        raise RemoteProtocolError("RSV bits set on a control frame", code=1002)
                    if n - pos < hlen + length:
                        break  # control frames are held until whole
                    payload = bytes(buf[pos + hlen : pos + hlen + length])
                    if masked:
                        payload = apply_mask(payload, bytes(buf[pos + hlen - 4 : pos + hlen]))
                    pos += hlen + length
                    self._control(opcode, payload)
                    continue
                # Data frame (§5.6) and fragmentation rules (§5.4).
                if opcode == 0:
                    if not self._msg_opcode:
                        raise RemoteProtocolError("continuation frame without a message", code=1002)
                    if rsv:
                        # RFC 7692 §6: RSV1 only on the first frame of a message.
                        raise RemoteProtocolError("RSV bits set on a continuation frame", code=1002)
                elif opcode <= 2:
                    if self._msg_opcode:
                        raise RemoteProtocolError(
                            "new data frame inside a fragmented message", code=1002
                        )
                    if rsv:
                        ext = self.extension
                        if ext is None or (ext.rsv_mask & rsv) != rsv:
                            raise RemoteProtocolError(
                                "RSV bits set without an extension", code=1002
                            )
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
                        key = bytes(buf[start - 4 : start]) if masked else b""
                        chunk = _payload(buf, start, pos, key)
                        if opcode == 1 and not utf8_valid(chunk):  # §8.1
                            raise RemoteProtocolError("invalid UTF-8 in text message", code=1007)
                        self._events.append(DataReceived(chunk, opcode == 2, True, True, 0, True))
                        continue
                    self._msg_opcode = opcode
                    self._msg_rsv = rsv
                    self._msg_size = 0
                    self._msg_delivered = False
                    if opcode == 1:
                        self._utf8 = Utf8Validator()
                else:
                    raise RemoteProtocolError(f"reserved opcode {opcode:#x}", code=1002)
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
                self._frame_mask = bytes(buf[pos + hlen - 4 : pos + hlen]) if masked else b""
                pos += hlen
                self._frame_fin = bool(fin)
                self._remaining = length
                self._in_frame = True
                if length == 0:
                    self._deliver(b"")
        finally:
            if pos:
                del buf[:pos]

    def _deliver(self, chunk: bytes) -> None:
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
        self._emit_data(chunk, final, remaining)

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
            self._held = True
            self._held_final = final
            return chunk, False
        self._held = False
        return chunk, final

    def _emit_data(self, chunk: bytes, final: bool, remaining: int) -> None:
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
        if final:
            binary = self._msg_opcode == 2
            self._msg_opcode = 0
            self._msg_rsv = 0
            self._msg_decoded = 0
            self._utf8 = None
        else:
            binary = self._msg_opcode == 2
        self._events.append(DataReceived(chunk, binary, first, final, remaining, self._frame_fin))

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:
            self._events.append(Ping(payload))
            if self.auto_pong and self.state is State.OPEN:
                self._out.extend(self._frame(0xA, payload))
        elif opcode == 0xA:
            self._events.append(Pong(payload))
        else:
            self._receive_close(payload)

    def _receive_close(self, payload: bytes) -> None:
        # §5.5.1 / §7.1.5: the body is empty or a 2-byte code plus UTF-8 reason.
        if not payload:
            code, reason = 1005, ""
        elif len(payload) == 1:
            raise RemoteProtocolError("close frame with a 1-byte payload", code=1002)
        else:
            code = int.from_bytes(payload[:2], "big")
            if not close_code_is_valid(code):
                raise RemoteProtocolError(f"invalid close code {code}", code=1002)
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise RemoteProtocolError("close reason is not valid UTF-8", code=1007) from None
        event = CloseReceived(code, reason)
        self._close_received = event
        self._events.append(event)
        if self.state is State.OPEN:
            # §5.5.1: answer with a close frame, echoing the code.
            self._send_close_frame(None if code == 1005 else code, "")
        self.state = transition(self.role, self.state, "recv_close")
        self._buf.clear()  # anything after the close frame is ignored (§5.5.1)
        if not self._client:
            # §7.1.1: the server closes the TCP connection first.
            self._out.append(_EOF)
        self._emit_closed(code, reason, clean=True)

    # ------------------------------------------------------------------ frames out

    def _frame(self, opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> list[bytes]:
        if self._client:
            return encode_frame(opcode, payload, fin, rsv, True, self._urandom(4))
        return encode_frame(opcode, payload, fin, rsv)

    def _check_open(self, what: str) -> None:
        if self.state is not State.OPEN:
            raise LocalProtocolError(f"cannot {what} in state {self.state.name}")

    def send_data(
        self, data: bytes | str, *, binary: bool | None = None, final: bool = True
    ) -> None:
        """Send a message, or one fragment of it (``final=False`` for all but the last).

        ``str`` is sent as text, ``bytes`` as binary unless ``binary`` says otherwise.
        Later fragments are sent as continuation frames automatically.
        """
        self._check_open("send data")
        if isinstance(data, str):
            payload = data.encode("utf-8")
            is_binary = False if binary is None else binary
        else:
            payload = bytes(data) if not isinstance(data, bytes) else data
            is_binary = True if binary is None else binary
        opcode = 0 if self._out_in_message else (2 if is_binary else 1)
        rsv = 0
        ext = self.extension
        if ext is not None:
            payload, rsv = ext.encode(payload, not self._out_in_message, final)
        self._out_in_message = not final
        self._out.extend(self._frame(opcode, payload, final, rsv))

    def send_ping(self, payload: bytes = b"") -> None:
        self._check_open("send a ping")
        if len(payload) > 125:
            raise LocalProtocolError("ping payload over 125 bytes")
        self._out.extend(self._frame(0x9, payload))

    def send_pong(self, payload: bytes = b"") -> None:
        self._check_open("send a pong")
        if len(payload) > 125:
            raise LocalProtocolError("pong payload over 125 bytes")
        self._out.extend(self._frame(0xA, payload))

    def send_close(self, code: int | None = 1000, reason: str = "") -> None:
        """Start the closing handshake (§7.1.2); data may still arrive until the peer's close."""
        if code is not None and not close_code_is_valid(code):
            raise LocalProtocolError(f"close code {code} may not be sent")
        if code is None and reason:
            raise LocalProtocolError("a close reason needs a close code")
        try:
            build_close_payload(code, reason)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        self.state = transition(self.role, self.state, "send_close")
        self._send_close_frame(code, reason)

    def _send_close_frame(self, code: int | None, reason: str) -> None:
        self._close_sent = True
        payload = build_close_payload(code, reason.encode("utf-8")[:123].decode("utf-8", "ignore"))
        self._out.extend(self._frame(int(Opcode.CLOSE), payload))
