"""Fuzz targets for lwsbridge: each takes one input (bytes) and checks the properties.

Every target is a plain function ``fn(data: bytes) -> None`` that raises on a property
violation, so it runs the same under atheris (``fuzz/run.py``), under pytest (its seed
corpus, ``tests/test_fuzz_targets.py``) and by hand (``python fuzz/run.py --replay F``).

The properties, for every target:

* **Never raises** anything but the documented errors: ``WSConnection.receive_data``
  and ``process_pending`` never raise; the stand-alone parsers and the inflater raise
  only :class:`RemoteProtocolError`; :class:`TLSTransport` raises only
  :class:`TLSFailure`.
* **Memory stays bounded**: after each feed (and the forced service a held
  permessage-deflate message needs), the receive buffer holds at most a head
  (``MAX_HEAD``) or a partial frame header plus a partial control frame; each decoded
  piece is at most the inflater's ``chunk_size`` (or the input it came from); a
  message never exceeds ``MAX_MESSAGE``; pending output is at most a small multiple
  of the input; forced service ends within a bounded number of steps.
* **Same events whole or byte by byte**: the input is fed once whole and once one byte
  per call; the event streams, normalised to what a user can rely on (a message's
  pieces joined, a request body's pieces joined), must match, and so must the bytes
  sent back unless the connection failed.  When it failed, where and how may differ in
  detail (a message over the limit is refused at its header either way, but the
  reason text differs between the one-frame fast path and the streaming path; a head
  with a bad first byte is refused at once byte by byte, and as 431 whole when it is
  also too long), so then only the events before the failure and its close code are
  compared, and a message cut off by the failure must be a prefix of the other one.

Targets import only public names of lwsbridge and read no underscore attribute.
"""

from __future__ import annotations

import functools
import os
import ssl
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lwsbridge.core import (
    Closed,
    CloseReceived,
    ConnectionFailed,
    DataReceived,
    Established,
    Event,
    HandshakeFailed,
    HTTPBody,
    HTTPRequest,
    Ping,
    Pong,
    RemoteProtocolError,
    RequestRejected,
    Role,
    State,
    UpgradeRequest,
    WSConnection,
)
from lwsbridge.core.buffer import ReceiveBuffer
from lwsbridge.core.deflate import PerMessageDeflate, PerMessageDeflateFactory
from lwsbridge.core.frames import FrameReader
from lwsbridge.core.http11 import parse_request_head, parse_response_head, read_response_head
from lwsbridge.core.http_server import ServerExchange
from lwsbridge.tls_transport import TLSFailure, TLSTransport

__all__ = ["TARGETS", "FuzzFailure", "Target"]

# Limits the connections under test are configured with: small, so that fuzzed inputs
# of a few KiB reach every limit (431, 1009 before and after inflation, held output).
MAX_HEAD = 1024
MAX_MESSAGE = 16 * 1024
CHUNK = 1024  # permessage-deflate: decoded bytes per piece
# Receive buffer at rest in a WebSocket state: a partial frame header (at most 14
# bytes) or a control frame not yet whole (header and up to 125 bytes of payload).
MAX_WS_BUFFER = 14 + 125
# process_pending() steps for one feed: one piece per step, CHUNK bytes or an empty
# final piece per message; far above what MAX_MESSAGE allows for the inputs we get.
MAX_PENDING_STEPS = 100_000

# A fixed Sec-WebSocket-Key (RFC 6455 §1.3's example) and mask, so that both runs of
# one input produce identical bytes.
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
MASK = b"\x37\xfa\x21\x3d"

# A request head as Chromium sends it (captured with fuzz/capture_chromium.py).
CHROMIUM_HEAD = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: 127.0.0.1:7681\r\n"
    b"Connection: Upgrade\r\n"
    b"Pragma: no-cache\r\n"
    b"Cache-Control: no-cache\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"HeadlessChrome/156.0.0.0 Safari/537.36\r\n"
    b"Upgrade: websocket\r\n"
    b"Origin: http://127.0.0.1:7681\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    b"Sec-WebSocket-Protocol: lws-mirror-protocol\r\n"
    b"\r\n"
)


def response_101(deflate: bool) -> bytes:
    ext = b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else b""
    return (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + ACCEPT + b"\r\n" + ext + b"\r\n"
    )


class FuzzFailure(AssertionError):
    """A property of a target does not hold for this input."""


def check(cond: object, what: str | Callable[[], str]) -> None:
    """Raise FuzzFailure unless ``cond``; ``what`` may be a lambda, formatted only then
    (a formatted message on every call was a tenth of a target's time)."""
    if not cond:
        raise FuzzFailure(what if isinstance(what, str) else what())


@dataclass(frozen=True)
class Target:
    name: str
    fn: Callable[[bytes], None]
    #: libFuzzer -max_len: large enough to reach every limit above
    max_len: int
    #: share of the run's time, relative to the other targets
    weight: float = 1.0


# ---------------------------------------------------------------------- event streams


class Trace:
    """What a user can rely on from one run: normalised events and the bytes sent back."""

    def __init__(self) -> None:
        self.items: list[tuple[object, ...]] = []
        self.message = bytearray()  # the message being received (pieces joined)
        self.message_binary: bool | None = None
        self.body = bytearray()  # the request body being received
        self.failed = False  # a failure event was seen (rejected, failed, handshake failed)
        self.fail_reason = ""  # ConnectionFailed's reason (for failure messages)
        self.out = bytearray()
        self.eof = False  # the b"" end-of-transport marker was produced

    def event(self, ev: Event) -> None:
        if isinstance(ev, DataReceived):
            check(
                ev.is_first == (self.message_binary is None),
                lambda: f"is_first wrong: {ev.is_first}",
            )
            if self.message_binary is not None:
                check(ev.is_binary == self.message_binary, "is_binary changed inside a message")
            self.message_binary = ev.is_binary
            self.message += ev.data
            check(len(self.message) <= MAX_MESSAGE, lambda: f"message of {len(self.message)} bytes")
            if ev.is_final:
                self.items.append(("message", ev.is_binary, bytes(self.message)))
                self.message.clear()
                self.message_binary = None
            return
        if isinstance(ev, HTTPBody):
            self.body += ev.data
            if ev.final:
                self.items.append(("body", bytes(self.body)))
                self.body.clear()
            return
        if isinstance(ev, (RequestRejected, HandshakeFailed, ConnectionFailed)):
            self.failed = True
            code = None
            if isinstance(ev, ConnectionFailed):
                code, self.fail_reason = ev.code, ev.reason
            self.items.append((type(ev).__name__, code))
            return
        if isinstance(ev, Closed):
            # The reason is ours unless the close was clean (then it is the peer's).
            self.items.append(("Closed", ev.code, ev.clean, ev.reason if ev.clean else None))
            return
        if isinstance(ev, (Ping, Pong, CloseReceived, Established, UpgradeRequest, HTTPRequest)):
            # Frozen dataclasses compare by value (Headers too): no need to format them.
            self.items.append((ev,))
            return
        raise FuzzFailure(f"unexpected event {ev!r}")

    def output(self, chunks: list[bytes]) -> None:
        for c in chunks:
            check(not self.eof, "output after the end-of-transport marker")
            if c:
                self.out += c
            else:
                self.eof = True


# Findings, once fixed, keep their input in fuzz/crashes/<target>/: the seed test
# (tests/test_fuzz_targets.py) and every fuzz run replay them.


def _same_failure(x: tuple[object, ...], y: tuple[object, ...], deflate: bool) -> bool:
    """The failing events agree, or differ only as two right answers may.

    A message that is both over the size limit (1009) and not valid UTF-8 (1007) may be
    refused for either: which is found first depends on where its pieces end (RFC 6455
    §7.4.1 gives both as the close code for their case).  Likewise a corrupt compressed
    message (permessage-deflate): whether zlib first reports invalid data (1007) or a
    final block followed by more bytes (1002) depends on where the input is cut.
    """
    if x == y:
        return True
    if x[0] != "ConnectionFailed" or y[0] != "ConnectionFailed":
        return False
    codes = {x[1], y[1]}
    return codes <= {1007, 1009} or (deflate and codes <= {1002, 1007})


def compare(whole: Trace, split: Trace, what: str) -> None:
    """The property "same events whole or byte by byte" (see the module notes)."""
    if not (whole.failed or split.failed):
        check(
            whole.items == split.items,
            lambda: f"{what}: events differ\n{whole.items}\n{split.items}",
        )
        check(whole.message == split.message, lambda: f"{what}: unfinished message differs")
        check(whole.body == split.body, lambda: f"{what}: unfinished body differs")
        check(whole.out == split.out, lambda: f"{what}: output differs")
        check(whole.eof == split.eof, lambda: f"{what}: end of transport differs")
        return
    check(
        whole.failed and split.failed,
        lambda: f"{what}: fails only one way\n{whole.items}\n{split.items}",
    )
    a, b = _until_failure(whole.items), _until_failure(split.items)
    check(
        len(a) == len(b)
        and a[:-1] == b[:-1]
        and _same_failure(a[-1], b[-1], _deflate_in_use(what, a)),
        lambda: f"{what}: events up to the failure differ\n{a}\n{b}",
    )
    m, n = bytes(whole.message), bytes(split.message)
    check(m.startswith(n) or n.startswith(m), lambda: f"{what}: cut-off messages differ")
    check(whole.eof and split.eof, lambda: f"{what}: failed without ending the transport")


def _deflate_in_use(what: str, items: list[tuple[object, ...]]) -> bool:
    """permessage-deflate is on: the target says so, or a handshake in the trace agreed it."""
    if what.endswith("_deflate"):
        return True
    for item in items:
        for ev in item:
            if isinstance(ev, Established) and any(
                ext.name == "permessage-deflate" for ext in ev.extensions
            ):
                return True
    return False


def _until_failure(items: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
    for i, item in enumerate(items):
        if item[0] in ("RequestRejected", "HandshakeFailed", "ConnectionFailed"):
            return items[: i + 1]
    return items


# ---------------------------------------------------------------------- WSConnection


class Driver:
    """Runs a WSConnection as an application would, recording a Trace.

    A server accepts every upgrade (taking the first subprotocol offered, and
    permessage-deflate when ``deflate`` and offered) and answers every plain request
    once its body is in; every held deflate message is drained with forced service.
    """

    def __init__(self, role: Role, *, deflate: bool) -> None:
        self.buf = ReceiveBuffer()
        self.conn = WSConnection(
            role,
            max_message_size=MAX_MESSAGE,
            max_head_size=MAX_HEAD,
            mask_key_source=lambda n: MASK[:n],
            receive_buffer=self.buf,
        )
        self.factory = PerMessageDeflateFactory(chunk_size=CHUNK) if deflate else None
        self.trace = Trace()
        self.fed = 0

    def initiate(self) -> None:
        exts = [self.factory] if self.factory is not None else []
        self.conn.initiate("127.0.0.1:7681", "/chat", extensions=exts, key=KEY)
        self.conn.data_to_send()  # the request itself is not under test

    def feed(self, data: bytes) -> None:
        self.fed += len(data)
        conn = self.conn
        conn.receive_data(data)
        steps = 0
        while True:
            events = conn.events()
            for ev in events:
                self.trace.event(ev)
                self.react(ev)
            if conn.pending():
                steps += 1
                check(steps <= MAX_PENDING_STEPS, "forced service does not end")
                conn.process_pending()
            elif not events:
                break
        self.trace.output(conn.data_to_send())
        self.check_bounds()

    def react(self, ev: Event) -> None:
        conn = self.conn
        if isinstance(ev, UpgradeRequest):
            exts = []
            if self.factory is not None:
                ext = self.factory.accept(ev.extensions)
                if ext is not None:
                    exts.append(ext)
            sub = ev.subprotocols[0] if ev.subprotocols else None
            conn.accept(sub, exts)
        elif (isinstance(ev, HTTPRequest) and not ev.content_length) or (
            isinstance(ev, HTTPBody) and ev.final
        ):
            conn.send_http_response(200, [], b"ok")

    def check_bounds(self) -> None:
        conn = self.conn
        n = len(self.buf)
        if conn.state in (State.OPEN, State.LOCAL_CLOSING):
            check(n <= MAX_WS_BUFFER, lambda: f"receive buffer of {n} bytes in {conn.state.name}")
        else:
            check(n <= MAX_HEAD, lambda: f"receive buffer of {n} bytes in {conn.state.name}")
        # What we send is answers: a 101 or HTTP response (a few hundred bytes), pongs
        # (at most three times the ping's size) and one close frame.
        out = len(self.trace.out)
        check(out <= 4 * self.fed + 1024, lambda: f"{out} bytes of output for {self.fed} in")


# The shortest valid upgrade (Chromium's own head is in the handshake corpus): the
# frame targets open two connections per input, so the handshake should cost little.
SHORT_HEAD = (
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
)


def _open(role: Role, deflate: bool) -> Driver:
    d = Driver(role, deflate=deflate)
    if role is Role.SERVER:
        d.feed(SHORT_HEAD)
    else:
        d.initiate()
        d.feed(response_101(deflate))
    check(d.conn.state is State.OPEN, "handshake did not open the connection")
    check((d.conn.extension is not None) == deflate, "deflate not negotiated as asked")
    return d


BYTEWISE = 64


def pieces(data: bytes) -> list[bytes]:
    """``data`` split for the "byte by byte" run.

    Up to BYTEWISE bytes: one byte per piece, every boundary.  Longer inputs (fed byte
    by byte they would cost a fuzzer most of its executions): the first BYTEWISE bytes
    one by one, then pieces of 1 to 16 bytes, the boundaries drawn from the input's
    CRC so that each input always splits the same way and, over the many inputs a run
    tries, every boundary is met.
    """
    n = len(data)
    if n <= BYTEWISE:
        return [data[i : i + 1] for i in range(n)]
    out = [data[i : i + 1] for i in range(BYTEWISE)]
    state = zlib.crc32(data) | 1
    pos = BYTEWISE
    while pos < n:
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF  # LCG: cheap, deterministic
        step = 1 + ((state >> 16) & 15)
        out.append(data[pos : pos + step])
        pos += step
    return out


# The byte-by-byte run doubles the cost of an input (a second connection, its
# handshake, many small feeds).  Fuzzing runs it for one input in SPLIT_EVERY (chosen
# by the input's CRC, so an input always gets the same treatment); every other property
# is checked on every input.  The seed-corpus test sets 1: every seed, both ways.
SPLIT_EVERY = int(os.environ.get("FUZZ_SPLIT_EVERY", "4"))


def _both_ways(make: Callable[[], Driver], data: bytes, what: str) -> None:
    whole = make()
    whole.feed(data)
    if SPLIT_EVERY > 1 and zlib.crc32(data) % SPLIT_EVERY:
        _end(whole)
        return
    split = make()
    for piece in pieces(data):
        split.feed(piece)
    compare(whole.trace, split.trace, what)
    _end(whole)
    _end(split)


def _end(d: Driver) -> None:
    """Then the transport ends: exactly one Closed in all, never an exception."""
    d.conn.receive_eof()
    closed = [ev for ev in d.conn.events() if isinstance(ev, Closed)]
    check(d.conn.state is State.CLOSED, "not CLOSED after EOF")
    before = sum(1 for item in d.trace.items if item[0] == "Closed")
    check(len(closed) + before == 1, lambda: f"Closed {len(closed) + before} times")


def _fresh_server() -> Driver:
    return Driver(Role.SERVER, deflate=True)


def _fresh_client() -> Driver:
    d = Driver(Role.CLIENT, deflate=True)
    d.initiate()
    return d


def handshake_server(data: bytes) -> None:
    """A server fed a request (head, body, and whatever follows): Chromium's and worse."""
    _both_ways(_fresh_server, data, "handshake_server")


def handshake_client(data: bytes) -> None:
    """A client after initiate() (offering permessage-deflate) fed a response."""
    _both_ways(_fresh_client, data, "handshake_client")


def _frames(role: Role, deflate: bool) -> Callable[[bytes], None]:
    what = f"frames_{role.name.lower()}{'_deflate' if deflate else ''}"

    def target(data: bytes) -> None:
        _both_ways(functools.partial(_open, role, deflate), data, what)

    target.__name__ = what
    target.__doc__ = f"A {role.name.lower()} in OPEN fed frames (deflate negotiated: {deflate})."
    return target


def _read_frames(reader: FrameReader, buf: bytearray, trace: Trace) -> bool:
    """Drive a FrameReader as WSConnection does: read, act on control frames, drain
    held output.  False once the stream ended (a close frame or an error)."""
    events: list[Event] = []
    try:
        for _ in range(MAX_PENDING_STEPS):
            if reader.held:
                reader.resume(events)
                control = None if reader.held or not buf else reader.read(buf, events)
            else:
                control = reader.read(buf, events)
            for ev in events:
                trace.event(ev)
            events.clear()
            if control is not None:
                trace.items.append(("control", control[0], control[1]))
                if control[0] == 8:
                    return False  # §5.5.1: nothing after a close frame is read
                continue
            if not reader.held:
                check(len(buf) <= MAX_WS_BUFFER, lambda: f"{len(buf)} bytes left in the buffer")
                return True
        raise FuzzFailure("the frame reader never runs dry")
    except RemoteProtocolError as exc:
        for ev in events:
            trace.event(ev)
        check(exc.code in (1002, 1007, 1009), f"close code {exc.code}")
        trace.failed = True
        trace.fail_reason = exc.reason
        trace.eof = True
        trace.items.append(("ConnectionFailed", exc.code))
        return False


def _frame_reader(client: bool) -> Callable[[bytes], None]:
    what = f"frame_reader_{'client' if client else 'server'}"

    def target(data: bytes) -> None:
        if not data:
            return
        sel, stream = data[0], data[1:]
        traces = []
        for split in (False, True):
            if split and SPLIT_EVERY > 1 and zlib.crc32(data) % SPLIT_EVERY:
                return
            ext = None
            if sel & 1:
                ext = PerMessageDeflate(chunk_size=CHUNK, remote_no_context_takeover=bool(sel & 2))
            reader = FrameReader(client=client, max_message_size=MAX_MESSAGE, extension=ext)
            buf = bytearray()
            trace = Trace()
            for piece in pieces(stream) if split else [stream]:
                buf += piece
                if not _read_frames(reader, buf, trace):
                    break
            traces.append(trace)
        compare(traces[0], traces[1], what + ("_deflate" if sel & 1 else ""))

    target.__name__ = what
    target.__doc__ = (
        f"core/frames.py FrameReader of a {'client' if client else 'server'} (the first byte: "
        "bit 0 permessage-deflate, bit 1 no_context_takeover), driven as WSConnection does."
    )
    return target


# ---------------------------------------------------------------------- HTTP heads


def _read_head_bytewise(data: bytes, server: bool) -> object:
    """Feed a head reader one byte at a time: the result, or the error type."""
    buf = ReceiveBuffer()
    exchange = ServerExchange()
    for piece in pieces(data):
        buf.append(piece)
        try:
            r = exchange.read_head(buf, MAX_HEAD) if server else read_response_head(buf, MAX_HEAD)
        except RemoteProtocolError:
            return RemoteProtocolError
        if r is not None:
            return r
    return None


def _read_head_whole(data: bytes, server: bool) -> object:
    buf = ReceiveBuffer()
    buf.append(data)
    try:
        if server:
            return ServerExchange().read_head(buf, MAX_HEAD)
        return read_response_head(buf, MAX_HEAD)
    except RemoteProtocolError:
        return RemoteProtocolError


def http_head(data: bytes) -> None:
    """Request and response heads: the parsers, and the readers whole vs byte by byte.

    The first byte picks request (even) or response (odd).
    """
    if not data:
        return
    server = not data[0] & 1
    head = data[1:]
    try:
        if server:
            method, target, version, headers = parse_request_head(head)
            check(isinstance(method, str) and isinstance(target, str), "request line types")
            check(version[0] == 1, lambda: f"version {version} accepted")
        else:
            version, status, reason, headers = parse_response_head(head)
            check(0 <= status <= 999 and isinstance(reason, str), "status line types")
        for name, value in headers:
            check(b"\r" not in value and b"\n" not in value and b"\0" not in value, "bad value")
            check(name == name.lower() and name, "field name not lower-case")
    except RemoteProtocolError as exc:
        check(exc.status in (400, 426, 431, 501, 505), f"status {exc.status}")
    whole = _read_head_whole(head, server)
    if SPLIT_EVERY > 1 and zlib.crc32(data) % SPLIT_EVERY:
        return
    split = _read_head_bytewise(head, server)
    if whole is RemoteProtocolError or split is RemoteProtocolError:
        # Byte by byte may refuse earlier and differently (a bad first byte), never later.
        check(split is RemoteProtocolError, lambda: f"refused only whole: {split!r}")
        return
    check(repr(whole) == repr(split), lambda: f"heads differ\n{whole!r}\n{split!r}")


# ---------------------------------------------------------------------- inflater


def inflate(data: bytes) -> None:
    """permessage-deflate's decode(): compressed fragments in, bounded pieces out.

    ``data[0]`` picks the negotiated parameters (no_context_takeover, window bits, the
    size allowance, chunk size).  The rest is a list of fragments, each a byte ``h``
    (low 7 bits: length; top bit: the message's last fragment) and its payload.
    Every message is decoded once fragment by fragment and once byte by byte.
    """
    if not data:
        return
    sel = data[0]
    nct = bool(sel & 1)
    bits = 8 + ((sel >> 1) & 7)
    chunk_size = (256, 1024, 4096, 65536)[(sel >> 4) & 3]
    max_size = (MAX_MESSAGE, 4096, 100, 0)[(sel >> 6) & 3]

    def make() -> PerMessageDeflate:
        return PerMessageDeflate(
            remote_no_context_takeover=nct, remote_max_window_bits=bits, chunk_size=chunk_size
        )

    messages: list[list[bytes]] = [[]]
    pos = 1
    while pos < len(data):
        h = data[pos]
        frag = data[pos + 1 : pos + 1 + (h & 0x7F)]
        pos += 1 + (h & 0x7F)
        messages[-1].append(frag)
        if h & 0x80:
            messages.append([])
    if not messages[-1]:
        messages.pop()
    by_frag = _inflate_run(make(), chunk_size, max_size, messages)
    if SPLIT_EVERY > 1 and zlib.crc32(data) % SPLIT_EVERY:
        return
    by_byte = _inflate_run(
        make(), chunk_size, max_size, [[bytes([b]) for b in b"".join(m)] or [b""] for m in messages]
    )
    n = min(len(by_frag), len(by_byte))
    check(by_frag[: n - 1] == by_byte[: n - 1], "inflated messages differ")
    if n:
        a, b = by_frag[n - 1], by_byte[n - 1]
        check(a.startswith(b) or b.startswith(a), "inflated messages differ")


def _inflate_run(
    ext: PerMessageDeflate, chunk_size: int, max_size: int, messages: list[list[bytes]]
) -> list[bytes]:
    out: list[bytes] = []
    for frags in messages:
        msg = bytearray()
        out.append(b"")
        try:
            for i, frag in enumerate(frags):
                final = i == len(frags) - 1
                piece = frag
                steps = 0
                while True:
                    allowed = max_size - len(msg) if max_size else None
                    got = ext.decode(piece, 0x40, final, allowed)
                    if len(got) > chunk_size:
                        raise FuzzFailure(f"piece of {len(got)} > {chunk_size}")
                    msg += got
                    if max_size:
                        check(len(msg) <= max_size, "allowance exceeded")
                    if not ext.pending():
                        break
                    piece = b""
                    steps += 1
                    check(steps <= MAX_PENDING_STEPS, "inflater never drains")
                out[-1] = bytes(msg)
        except RemoteProtocolError as exc:
            check(exc.code in (1002, 1007, 1009), f"close code {exc.code}")
            out[-1] = bytes(msg)
            return out  # the connection is failed: no later message
        out[-1] = bytes(msg)
    return out


# ---------------------------------------------------------------------- TLS


@functools.cache
def _tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """In-memory server and client contexts with a throwaway CA (made once)."""
    import trustme

    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    cert = ca.issue_cert("localhost", key_type=trustme.KeyType.ECDSA)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as d:
        chain, key = Path(d, "chain.pem"), Path(d, "key.pem")
        chain.write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
        key.write_bytes(cert.private_key_pem.bytes())
        server.load_cert_chain(chain, key)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    return server, client


def _tls_step(t: TLSTransport) -> None:
    """What the service does with input: advance the handshake, then read plaintext."""
    if t.handshaking and not t.handshake():
        return
    for _ in range(1000):
        got = t.read(16384)
        if not got:
            return
    raise FuzzFailure("read() never runs dry")


def _tls_pump(a: TLSTransport, b: TLSTransport) -> None:
    for _ in range(20):
        if not (a.handshaking or b.handshaking):
            return
        for x, y in ((a, b), (b, a)):
            if x.handshaking:
                x.handshake()
            out = x.take_output()
            if out:
                y.feed(out)
    raise FuzzFailure("in-memory TLS handshake did not finish")


def tls(data: bytes) -> None:
    """TLSTransport fed garbage records, before and after its handshake.

    ``data[0]`` picks the side fed and when: 0 server before, 1 client before (after its
    ClientHello), 2 server after, 3 client after, 4 server after a valid application
    record.  Only :class:`TLSFailure` may come out; output stays bounded.
    """
    if not data:
        return
    server_ctx, client_ctx = _tls_contexts()
    mode, garbage = data[0] % 5, data[1:]
    srv = TLSTransport(server_ctx, server_side=True)
    cli = TLSTransport(client_ctx, server_side=False, hostname="localhost")
    victim = cli if mode in (1, 3) else srv
    try:
        if mode == 1:
            cli.handshake()
            cli.take_output()
        elif mode >= 2:
            _tls_pump(cli, srv)
            if mode == 4:
                for rec in cli.encrypt([b"GET / HTTP/1.1\r\n\r\n"]):
                    garbage = rec + garbage
        victim.feed(garbage)
        _tls_step(victim)
    except TLSFailure as exc:
        check(str(exc), "TLSFailure without a reason")
    out = victim.take_output()
    check(len(out) <= 16384 + 4 * len(garbage), lambda: f"{len(out)} bytes of TLS output")
    # Sending after a failure, and the end of stream, still never raise.
    chunks = victim.encrypt([b"bye", b""])
    check(chunks and chunks[-1] == b"", "encrypt() lost the end-of-stream marker")


# ---------------------------------------------------------------------- the table

TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("http_head", http_head, 2048),
        Target("handshake_server", handshake_server, 1536),
        Target("handshake_client", handshake_client, 1536),
        Target("frames_server", _frames(Role.SERVER, False), 512),
        Target("frames_client", _frames(Role.CLIENT, False), 512),
        Target("frames_server_deflate", _frames(Role.SERVER, True), 512),
        Target("frames_client_deflate", _frames(Role.CLIENT, True), 512),
        Target("frame_reader_server", _frame_reader(False), 512),
        Target("frame_reader_client", _frame_reader(True), 512),
        Target("inflate", inflate, 512),
        # A handshake per input for three of its five modes: slow, so less time.
        Target("tls", tls, 1024, weight=0.5),
    )
}
