"""One WebSocket connection, either role, as a sans-IO state machine: bytes in, events out.

What this class does for you: HTTP/1.1 head parsing and the RFC 6455 opening
handshake, frame parsing with partial delivery, UTF-8 validation, size limits, automatic
pong and close replies, the close handshake, and failing the connection with the
right close code.

What it will not do: touch a socket, a clock or a loop.  You feed it bytes with
``receive_data`` / ``receive_eof``, take events with ``events()``, and write what
``data_to_send()`` returns -- a ``b""`` chunk in it means "close the transport now".
Timeouts (handshake, close, ping) are yours: call ``abort()`` when one expires.
One case has no ``b""``: a client whose close handshake completed cleanly waits for the
server to close TCP first (RFC 6455 §7.1.1), so close it yourself when the peer's FIN
arrives or a close timeout expires (the rule in full: :mod:`lwsbridge.core.state`).

The layers: :class:`~lwsbridge.core.http_server.ServerExchange` reads requests and
frames responses, :func:`~lwsbridge.core.http11.read_response_head` reads the client's
101, :class:`~lwsbridge.core.frames.FrameReader` reads frames.  This class feeds the
buffer to the reader of the current state, applies the state machine of
:mod:`lwsbridge.core.state` and turns results into events and replies.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING

from lwsbridge.core.buffer import FramePool, ReceiveBuffer
from lwsbridge.core.errors import LocalProtocolError, RemoteProtocolError
from lwsbridge.core.events import (
    Closed,
    CloseReceived,
    ConnectionFailed,
    Established,
    Event,
    HandshakeFailed,
    Headers,
    HTTPRequest,
    Ping,
    Pong,
    RequestRejected,
)
from lwsbridge.core.extensions import Extension, ExtensionFactory
from lwsbridge.core.frames import (
    FrameReader,
    Opcode,
    build_close_payload,
    close_code_is_valid,
    encode_frame,
    parse_close_payload,
)
from lwsbridge.core.handshake import ClientHandshake, HeaderList, build_accept, build_reject
from lwsbridge.core.http11 import read_response_head
from lwsbridge.core.http_server import ServerExchange
from lwsbridge.core.state import Role, State, transition

_PACK_H = struct.Struct("!BB").pack  # a frame's first two bytes (frames.encode_frame's)

__all__ = ["WSConnection"]

_EOF = b""
_WS_STATES = (State.OPEN, State.LOCAL_CLOSING)
# Opcodes as plain ints for the send path (an IntEnum in a frame header costs more).
_CONTINUATION = int(Opcode.CONTINUATION)
_TEXT = int(Opcode.TEXT)
_BINARY = int(Opcode.BINARY)
_CLOSE = int(Opcode.CLOSE)
_PING = int(Opcode.PING)
_PONG = int(Opcode.PONG)
# Looked up once: an Enum class's attribute read goes through its metaclass's
# __getattr__ hook (~0.1 us), and these are read for every connection.
_SERVER, _CLIENT = Role.SERVER, Role.CLIENT
_HTTP_HEAD, _HTTP_RESPONDING, _IDLE = State.HTTP_HEAD, State.HTTP_RESPONDING, State.IDLE
_OPEN, _CLOSED = State.OPEN, State.CLOSED


class WSConnection:
    """A WebSocket connection in the ``SERVER`` or ``CLIENT`` role (lws: one ``wsi``).

    Limits: ``max_message_size`` (default 1 MiB, 0 = unlimited) and ``max_frame_size``
    (default 0 = only the message limit) close with 1009 as soon as a frame header
    announces too much, before any of its payload is buffered; ``max_head_size``
    (default 8 KiB) answers 431.  ``auto_pong`` answers pings (the Ping event is
    emitted either way).  ``receive_buffer`` lets a caller supply the buffer input is
    parsed from (a fresh :class:`ReceiveBuffer` by default).  ``frame_pool``: large
    data frames within its bounds are gathered in one of its buffers and delivered in
    one :class:`DataReceived` (see :class:`~lwsbridge.core.buffer.FramePool`); None
    (the default) delivers every frame in pieces as its bytes arrive.
    """

    # One object per connection: slots keep idle connections small (no __dict__).
    __slots__ = (
        "_buf",
        "_client",
        "_close_received",
        "_close_sent",
        "_closed_emitted",
        "_events",
        "_frames",
        "_handshake",
        "_http",
        "_key",
        "_out",
        "_out_in_message",
        "_request_headers",
        "_urandom",
        "auto_pong",
        "max_head_size",
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
        receive_buffer: ReceiveBuffer | None = None,
        frame_pool: FramePool | None = None,
    ) -> None:
        self.role = role
        self.state = _HTTP_HEAD if role is _SERVER else _IDLE
        self.max_head_size = max_head_size
        self.auto_pong = auto_pong
        self._urandom = mask_key_source
        self._client = role is _CLIENT
        self._buf = receive_buffer if receive_buffer is not None else ReceiveBuffer()
        self._events: list[Event] = []
        self._out: list[bytes] = []
        self._frames = FrameReader(
            client=self._client,
            max_message_size=max_message_size,
            max_frame_size=max_frame_size,
            pool=frame_pool,
        )
        self._http = ServerExchange()
        # handshake
        self._key = b""  # server: the client's Sec-WebSocket-Key
        self._handshake: ClientHandshake | None = None  # client: what it offered
        self._request_headers: Headers | None = None
        self.subprotocol: str | None = None
        # close handshake and the message being sent
        self._out_in_message = False
        self._close_sent = False
        self._close_received: CloseReceived | None = None
        self._closed_emitted = False

    # ------------------------------------------------------------------ settings

    # The frame limits and the extension live in the frame reader that applies them.
    @property
    def max_message_size(self) -> int:
        return self._frames.max_message_size

    @max_message_size.setter
    def max_message_size(self, value: int) -> None:
        self._frames.max_message_size = value

    @property
    def max_frame_size(self) -> int:
        return self._frames.max_frame_size

    @max_frame_size.setter
    def max_frame_size(self, value: int) -> None:
        self._frames.max_frame_size = value

    @property
    def extension(self) -> Extension | None:
        """The extension in use (negotiated in the handshake), or None."""
        return self._frames.extension

    @extension.setter
    def extension(self, value: Extension | None) -> None:
        self._frames.extension = value

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
    def closed(self) -> bool:
        return self.state is _CLOSED

    @property
    def request_headers(self) -> Headers | None:
        """The peer's handshake headers (request for a server, response for a client)."""
        return self._request_headers

    @property
    def payload_remaining(self) -> int:
        """Payload bytes of the data frame being received still to come (0: none).

        A transport may read up to this many bytes in one go: they are delivered
        straight from its buffer (see :meth:`receive_data`).
        """
        frames = self._frames
        return frames.remaining if frames.in_payload and not self._buf.data else 0

    def payload_buffer(self) -> memoryview | None:
        """Where the rest of a large frame being gathered may be read to directly.

        None unless a frame is being gathered whole (``frame_pool``) and nothing else
        is buffered.  A transport may ``recv_into`` the returned view (it ends at the
        frame's end), then must call :meth:`payload_filled` with the byte count before
        any other call, and must not keep the view.
        """
        if self._buf.data or self.state not in _WS_STATES:
            return None
        return self._frames.gather_target()

    def payload_filled(self, n: int) -> None:
        """``n`` bytes were read into the front of :meth:`payload_buffer`'s view."""
        try:
            self._frames.gathered(n, self._events)
        except RemoteProtocolError as exc:
            self._fail(exc)

    if TYPE_CHECKING:

        @property
        def in_message_out(self) -> bool: ...

        @property
        def output_waiting(self) -> Sequence[bytes]: ...

        @property
        def events_waiting(self) -> Sequence[Event]: ...

        @property
        def input_held(self) -> bool: ...

    else:
        # Read-only, with C getters (no Python frame): read on every message.
        in_message_out = property(
            attrgetter("_out_in_message"),
            doc="A message we send is unfinished: the next ``send_data`` continues it.",
        )
        output_waiting = property(
            attrgetter("_out"),
            doc="What :meth:`data_to_send` would take now (true when there is any); "
            "a live view, do not change it.",
        )
        events_waiting = property(
            attrgetter("_events"),
            doc="What :meth:`events` would take now (true when there is any); "
            "a live view, do not change it.",
        )
        input_held = property(
            attrgetter("_frames.held"),
            doc="An extension holds decoded input back; :meth:`pending` is false "
            "whenever this is (a cheap first test).",
        )

    def pending(self) -> bool:
        """True if there is work to do without new input (lws: forced service).

        That is the case when an extension holds decoded output back (``ext.pending()``);
        call :meth:`process_pending` then.  (Input held while the caller answers a
        request is parsed as soon as the caller answers.)
        """
        return self._frames.held and self.state in _WS_STATES

    def process_pending(self) -> None:
        """Forced service: deliver the next piece of output the extension held back.

        An extension (permessage-deflate) returns at most a bounded piece of decoded
        data per call; while it holds more, frame parsing stops (input stays in the
        buffer, control frames included, so the order of events is kept) and
        :meth:`pending` is True.  Each call emits at most one more
        :class:`DataReceived`; once nothing is held, buffered input is parsed again.
        Never raises for anything the peer sent.
        """
        frames = self._frames
        if not frames.held or self.state not in _WS_STATES:
            return
        try:
            frames.resume(self._events)
            if not frames.held and self._buf:
                self._receive_frames()
        except RemoteProtocolError as exc:
            self._fail(exc)

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the peer.  Never raises for anything the peer sends."""
        state = self.state
        if state is State.CLOSED:
            return  # RFC 6455 §7.1.1 / §5.5.1: input after the close is ignored
        frames = self._frames
        buf = self._buf.data
        try:
            # A 64-bit length (127): a frame of 64 KiB or more (a control frame with one
            # fails in read).  No len() call: this test runs on every read.
            big = data[1] & 0x7F == 127
        except IndexError:
            big = False
        if big and not buf and state in _WS_STATES and not frames.in_payload:
            # A read that starts a large data frame: only its header goes through the
            # receive buffer; the payload goes out from ``data`` below, not copied into
            # the buffer first.
            hlen = 14 if data[1] & 0x80 else 10
            with memoryview(data) as mv:
                buf += mv[:hlen]
            try:
                control = frames.read(buf, self._events)
            except RemoteProtocolError as exc:
                self._fail(exc)
                return
            if control is not None:
                # A control frame may spell its short length (0-125) in 64 bits, and
                # read takes it: the rest of this read goes to the buffer, then the
                # frames loop acts on the control frame and parses on from there.
                with memoryview(data) as mv:
                    buf += mv[hlen:]
                try:
                    self._receive_frames(control)
                except RemoteProtocolError as exc:
                    self._fail(exc)
                return
            if len(data) == hlen:
                return  # the header alone (how the service reads it after a large frame)
            data = memoryview(data)[hlen:]
        if frames.in_frame and state in _WS_STATES and not frames.held and data and not buf:
            # Payload of the frame in progress, nothing before it: unmask it straight from
            # ``data`` (one copy), not through the receive buffer (two more).
            try:
                used = frames.read_payload(data, self._events)
            except RemoteProtocolError as exc:
                self._fail(exc)
                return
            if used == len(data):
                return
            data = memoryview(data)[used:]
        if data:
            buf += data  # in place: the buffer's own bytearray
        if state not in _WS_STATES:
            self._process()
            return
        # The hot path, as flat as it goes: one reader call for all the data frames here.
        try:
            control = frames.read(buf, self._events)
            if control is not None:
                self._receive_frames(control)
        except RemoteProtocolError as exc:
            self._fail(exc)

    def receive_eof(self) -> None:
        """The peer closed its side (TCP FIN) or the transport broke."""
        if self.state is State.CLOSED:
            return
        self._drop_input()
        self.state = transition(self.role, self.state, "eof")
        self._emit_closed(1006, "connection closed without a close frame", clean=False)

    def _process(self) -> None:
        """Feed the buffer to the reader of the current state."""
        try:
            state = self.state
            if state in _WS_STATES:
                self._receive_frames()
            elif state is _HTTP_HEAD:
                if self._client:
                    self._receive_response_head()
                else:
                    self._receive_request_head()
            elif state is _HTTP_RESPONDING and self._http.body_remaining:
                self._receive_body()
            # UPGRADE_PENDING / HTTP_RESPONDING / IDLE: input waits in the buffer.
        except RemoteProtocolError as exc:
            self._fail(exc)

    def _receive_frames(self, control: tuple[int, bytes] | None = None) -> None:
        """Read frames until the input runs out, acting on each control frame met.

        ``control``: a control frame the caller's own read already returned.
        """
        frames = self._frames
        buf = self._buf.data
        events = self._events
        if control is None:
            control = frames.read(buf, events)
        while control is not None:
            self._control(control[0], control[1])
            if self.state not in _WS_STATES or not buf:
                return
            control = frames.read(buf, events)

    # ------------------------------------------------------------------ failing

    def _fail(self, exc: RemoteProtocolError) -> None:
        """Peer misbehaved: answer with the right code and end the connection."""
        state = self.state
        if state is State.CLOSED:
            return
        self._drop_input()
        if state is State.HTTP_HEAD and not self._client:
            self._out.append(build_reject(exc.status, exc.reason))
            self._out.append(_EOF)
            self.state = transition(self.role, state, "bad_request")
            self._events.append(RequestRejected(exc.status, exc.reason))
            self._emit_closed(1006, f"HTTP {exc.status}: {exc.reason}", clean=False)
            return
        if state is State.HTTP_HEAD and self._client:
            self._out.append(_EOF)
            self.state = transition(self.role, state, "response_bad")
            status = exc.status if exc.status != 400 else None
            self._events.append(HandshakeFailed(exc.reason, status))
            self._emit_closed(1006, exc.reason, clean=False)
            return
        # RFC 6455 §7.1.7: send a close frame with the code (unless we did), then close.
        if state is State.OPEN and not self._close_sent:
            self._send_close_frame(exc.code, exc.reason[:100])
        self._out.append(_EOF)
        self.state = transition(self.role, state, "fail")
        self._events.append(ConnectionFailed(exc.code, exc.reason))
        self._emit_closed(exc.code, exc.reason, clean=False)

    def _drop_input(self) -> None:
        """Forget buffered input, and give a gathering buffer back to its pool."""
        self._buf.clear()
        self._frames.release()

    def _emit_closed(self, code: int, reason: str, clean: bool) -> None:
        if not self._closed_emitted:
            self._closed_emitted = True
            self._events.append(Closed(code, reason, clean))

    def abort(self, reason: str = "aborted") -> None:
        """End the connection now without a close handshake (timeouts, transport errors)."""
        if self.state is _CLOSED:
            return
        self._drop_input()
        self.state = transition(self.role, self.state, "abort")
        self._out.append(_EOF)
        self._emit_closed(1006, reason, clean=False)

    # ------------------------------------------------------------------ server side

    def _receive_request_head(self) -> None:
        request = self._http.read_head(self._buf, self.max_head_size)
        if request is None:
            return
        self._request_headers = request.headers
        if isinstance(request, HTTPRequest):
            self.state = transition(self.role, self.state, "http_request")
            self._events.append(request)
            if request.content_length:
                self._receive_body()
        else:
            self._key = request.key
            self.state = transition(self.role, self.state, "upgrade_request")
            self._events.append(request)

    def _receive_body(self) -> None:
        body = self._http.read_body(self._buf)
        if body is not None:
            self._events.append(body)

    def accept(
        self,
        subprotocol: str | None = None,
        extensions: Sequence[Extension] = (),
        extra_headers: HeaderList = (),
    ) -> None:
        """Server: accept the pending :class:`UpgradeRequest` (lws: the 101 it sends).

        ``subprotocol`` must be one the client offered.  Emits :class:`Established`.
        """
        if (
            subprotocol is not None
            and self.state is State.UPGRADE_PENDING
            and self._request_headers is not None
        ):
            offered = self._request_headers.get_list(b"sec-websocket-protocol")
            if subprotocol.encode("latin-1") not in offered:
                raise LocalProtocolError(f"subprotocol {subprotocol!r} was not offered")
        if len(extensions) > 1:
            raise LocalProtocolError("only one extension at a time is supported")
        state = transition(self.role, self.state, "accept")
        # (no list comprehension, a call in 3.11, for the common handshake without one)
        responses = [e.response() for e in extensions] if extensions else []
        try:
            response = build_accept(self._key, subprotocol, responses, extra_headers)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        self.state = state
        self._frames.extension = extensions[0] if extensions else None  # self.extension
        self.subprotocol = subprotocol
        self._out.append(response)
        # ("is None", not "or": Headers has a Python __len__, a call per connection)
        headers = self._request_headers
        if headers is None:
            headers = Headers()
        self._events.append(Established(subprotocol, tuple(responses), headers))
        if self._buf.data:  # (ReceiveBuffer's __bool__ is a Python call)
            self._process()

    def reject(self, status: int = 403, reason: str = "", extra_headers: HeaderList = ()) -> None:
        """Server: refuse the pending upgrade with an HTTP error and close."""
        state = transition(self.role, self.state, "reject")
        try:
            response = build_reject(status, reason or "rejected", extra_headers)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        self.state = state
        self._drop_input()
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
        if self.state is not State.HTTP_RESPONDING:
            raise LocalProtocolError("no HTTP request is waiting for a response")
        self._out.append(self._http.response_head(status, headers, body, end, reason))
        if body:
            self._out.append(body)
        if end:
            self._response_done()

    def send_http_body(self, data: bytes, *, end: bool = False) -> None:
        """Server: more of a response body begun with ``send_http_response(end=False)``."""
        if self.state is not State.HTTP_RESPONDING or not self._http.responding:
            raise LocalProtocolError("no HTTP response is in progress")
        if data:
            self._out.append(data)
        if end:
            self._response_done()

    def _response_done(self) -> None:
        if self._http.end_response():
            self.state = transition(self.role, self.state, "response_keep_alive")
            self._request_headers = None
            if self._buf:
                self._process()
        else:
            self.state = transition(self.role, self.state, "response_close")
            self._drop_input()
            self._out.append(_EOF)
            self._emit_closed(1000, "HTTP response complete", clean=True)

    # ------------------------------------------------------------------ client side

    def initiate(
        self,
        host: str,
        target: str = "/",
        subprotocols: Sequence[str] = (),
        extensions: Sequence[ExtensionFactory] = (),
        origin: str | None = None,
        extra_headers: HeaderList = (),
        *,
        key: bytes | None = None,
    ) -> None:
        """Client: send the opening handshake (lws: ``lws_client_connect_via_info``'s request).

        ``key`` is the ``Sec-WebSocket-Key`` to send; a fresh random one by default
        (RFC 6455 §4.1 wants a new nonce per connection: pin it only in tests).
        """
        state = transition(self.role, self.state, "initiate")
        handshake = self._handshake = ClientHandshake()
        request = handshake.request(
            host, target, subprotocols, extensions, origin, extra_headers, key
        )
        self.state = state
        self._out.append(request)

    def _receive_response_head(self) -> None:
        head = read_response_head(self._buf, self.max_head_size)
        if head is None:
            return
        _version, status, _reason, headers = head
        self._request_headers = headers
        assert self._handshake is not None  # HTTP_HEAD of a client comes after initiate
        try:
            subprotocol, accepted, extension = self._handshake.check(status, headers)
        except RemoteProtocolError as exc:
            self._drop_input()
            self._out.append(_EOF)
            self.state = transition(self.role, self.state, "response_bad")
            self._events.append(HandshakeFailed(exc.reason, status, headers))
            self._emit_closed(1006, exc.reason, clean=False)
            return
        self.subprotocol = subprotocol
        self.extension = extension
        self.state = transition(self.role, self.state, "response_101")
        self._events.append(Established(subprotocol, accepted, headers))
        if self._buf:
            self._receive_frames()

    # ------------------------------------------------------------------ control frames in

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == _PING:
            self._events.append(Ping(payload))
            if self.auto_pong and self.state is State.OPEN:
                self._out.extend(self._frame(_PONG, payload))
        elif opcode == _PONG:
            self._events.append(Pong(payload))
        else:
            self._receive_close(payload)

    def _receive_close(self, payload: bytes) -> None:
        code, reason = parse_close_payload(payload)
        event = CloseReceived(code, reason)
        self._close_received = event
        self._events.append(event)
        if self.state is _OPEN:
            # §5.5.1: answer with a close frame.  Echo the peer's code and reason, as
            # libwebsockets and websockets do, by echoing its payload: parse_close_payload
            # let through only a code that may be sent and a reason of valid UTF-8, the
            # two fit 125 bytes since they came in one control frame, and no payload
            # (1005) is answered with none (1005 itself must never be sent, §7.4.1) --
            # the very bytes _send_close_frame would build from (code, reason).
            self._close_sent = True
            self._out.extend(self._frame(_CLOSE, payload))
        self.state = transition(self.role, self.state, "recv_close")
        self._drop_input()  # anything after the close frame is ignored (§5.5.1)
        if not self._client:
            # §7.1.1: the server closes the TCP connection first.  The client emits no
            # b"" here: it waits for the server's FIN (its owner bounds that wait, see
            # the module docstring of lwsbridge.core.state).
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
        if self.state is not State.OPEN:
            self._check_open("send data")
        if isinstance(data, str):
            payload = data.encode("utf-8")
            is_binary = False if binary is None else binary
        else:
            payload = bytes(data) if not isinstance(data, bytes) else data
            is_binary = True if binary is None else binary
        opcode = _CONTINUATION if self._out_in_message else (_BINARY if is_binary else _TEXT)
        rsv = 0
        ext = self._frames.extension
        if ext is not None:
            payload, rsv = ext.encode(payload, not self._out_in_message, final)
        self._out_in_message = not final
        if self._client:
            self._out.extend(self._frame(opcode, payload, final, rsv))
        elif len(payload) < 126:
            # encode_frame's smallest case, in place: a server's echo of a small message
            # is the most common frame there is, and one chunk.
            self._out.append(_PACK_H((0x80 if final else 0) | rsv | opcode, len(payload)) + payload)
        else:
            self._out.extend(encode_frame(opcode, payload, final, rsv))

    def send_ping(self, payload: bytes = b"") -> None:
        self._check_open("send a ping")
        if len(payload) > 125:
            raise LocalProtocolError("ping payload over 125 bytes")
        self._out.extend(self._frame(_PING, payload))

    def send_pong(self, payload: bytes = b"") -> None:
        self._check_open("send a pong")
        if len(payload) > 125:
            raise LocalProtocolError("pong payload over 125 bytes")
        self._out.extend(self._frame(_PONG, payload))

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
        self._out.extend(self._frame(_CLOSE, payload))
