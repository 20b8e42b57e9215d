"""The test server's live status: the ``lws-status`` protocol and the ``/stats`` document.

As the libwebsockets test server's lws-status protocol, :class:`Status` keeps a list of
the connected WebSocket clients (peer, user agent, protocol, when they connected) and,
per protocol, the messages and bytes received and sent, with per-second rates over a
sliding window (:class:`Meter`).  Every member of ``lws-status`` gets the document as
JSON when something changes, at most once per ``interval`` (0.5 s) each: a change asks
for a WRITEABLE callback, or arms the member's timer when it was sent one too recently,
and the document is written only in SERVER_WRITEABLE.

A protocol is watched by :meth:`Status.track`, which wraps its callback: the wrapper
sees ESTABLISHED (the client joins; its user agent is copied there, while the handshake
headers still exist), RECEIVE (counted) and CLOSED (it leaves).  What a protocol writes
only it knows, so it reports that with :meth:`Status.sent` after ``conn.write``.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from lwsbridge.context import Connection, Protocol, Reason, WriteKind

__all__ = ["Meter", "Status"]

WINDOW = 2.0  # seconds the per-second rates are averaged over
BUCKET = 0.1  # the window slides in steps of this many seconds
INTERVAL = 0.5  # at most one document per member this often
MAX_LISTED = 200  # clients listed in one document ("connections" counts them all)

_ESTABLISHED = Reason.ESTABLISHED
_RECEIVE = Reason.RECEIVE
_CLOSED = Reason.CLOSED


class Meter:
    """Messages and bytes of one protocol, in and out: totals and per-second rates.

    The rates are sums over the last ``window`` seconds divided by ``window``, kept in
    buckets of ``bucket`` seconds, so a flood costs one list update per message and the
    memory stays bounded by ``window / bucket`` buckets.
    """

    __slots__ = (
        "_buckets",
        "_clock",
        "_slots",
        "bucket",
        "rx_bytes",
        "rx_messages",
        "tx_bytes",
        "tx_messages",
        "window",
    )

    def __init__(
        self,
        window: float = WINDOW,
        bucket: float = BUCKET,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < bucket <= window:
            raise ValueError(f"meter bucket of {bucket} s: must be > 0 and <= the window")
        self.window = window
        self.bucket = bucket
        self._slots = max(1, round(window / bucket))
        self._clock = clock
        # [slot, rx messages, rx bytes, tx messages, tx bytes], oldest first
        self._buckets: deque[list[int]] = deque()
        self.rx_messages = self.rx_bytes = self.tx_messages = self.tx_bytes = 0

    def _current(self) -> list[int]:
        slot = math.floor(self._clock() / self.bucket)
        b = self._buckets
        if b and b[-1][0] == slot:
            return b[-1]
        cur = [slot, 0, 0, 0, 0]
        b.append(cur)
        self._prune(slot)
        return cur

    def _prune(self, slot: int) -> None:
        b = self._buckets
        while b and b[0][0] <= slot - self._slots:
            b.popleft()

    def rx(self, nbytes: int, messages: int = 1) -> None:
        """Count ``nbytes`` received, ending ``messages`` messages (0 for a fragment)."""
        cur = self._current()
        cur[1] += messages
        cur[2] += nbytes
        self.rx_messages += messages
        self.rx_bytes += nbytes

    def tx(self, nbytes: int, messages: int = 1) -> None:
        """Count ``nbytes`` sent in ``messages`` messages."""
        cur = self._current()
        cur[3] += messages
        cur[4] += nbytes
        self.tx_messages += messages
        self.tx_bytes += nbytes

    def busy(self) -> bool:
        """True while anything counted is still inside the window (a rate is not 0)."""
        self._prune(math.floor(self._clock() / self.bucket))
        return bool(self._buckets)

    def rates(self) -> tuple[float, float, float, float]:
        """Per second over the window: rx messages, rx bytes, tx messages, tx bytes."""
        self._prune(math.floor(self._clock() / self.bucket))
        sums = [0, 0, 0, 0]
        for b in self._buckets:
            sums[0] += b[1]
            sums[1] += b[2]
            sums[2] += b[3]
            sums[3] += b[4]
        w = self.window
        return (sums[0] / w, sums[1] / w, sums[2] / w, sums[3] / w)

    def as_dict(self) -> dict[str, Any]:
        rxm, rxb, txm, txb = self.rates()
        return {
            "rx": {
                "messages": self.rx_messages,
                "bytes": self.rx_bytes,
                "messages_per_s": round(rxm, 2),
                "bytes_per_s": round(rxb, 1),
            },
            "tx": {
                "messages": self.tx_messages,
                "bytes": self.tx_bytes,
                "messages_per_s": round(txm, 2),
                "bytes_per_s": round(txb, 1),
            },
        }


class _Client:
    __slots__ = ("connected_at", "meter", "peer", "protocol", "started", "user_agent")

    def __init__(self, peer: str, user_agent: str, protocol: str, meter: Meter, now: float) -> None:
        self.peer = peer
        self.user_agent = user_agent
        self.protocol = protocol
        self.meter = meter
        self.connected_at = time.time()  # wall clock, for the page to show
        self.started = now  # monotonic, for the time connected


class _Member:
    """Per-connection state of an lws-status member."""

    __slots__ = ("last_sent", "version")

    def __init__(self) -> None:
        self.version = -1  # the document version it was last sent
        self.last_sent = -math.inf  # when (Status clock)


def _peer_text(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer)


class Status:
    """Connected clients and per-protocol counters, pushed to ``lws-status`` members.

    One per context.  ``protocol`` is the ``lws-status`` :class:`Protocol` to add to
    the context's list (it is tracked itself).  Its members' own documents are counted
    too, but do not count as a change: an idle server sends nothing.
    """

    NAME = "lws-status"

    def __init__(
        self,
        interval: float = INTERVAL,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.window = window
        self._clock = clock
        self.meters: dict[str, Meter] = {}
        self.clients: dict[Connection, _Client] = {}
        self._members: dict[Connection, _Member] = {}
        # Members with nothing asked for them (no WRITEABLE or timer pending): a change
        # has to ask for those only, so a change costs nothing while all are waiting.
        self._idle: set[Connection] = set()
        self._version = 0  # bumped on every change
        self._doc: tuple[int, str] = (-1, "")  # the last document made, by version
        self.protocol = self.track(Protocol(self.NAME, self._callback))

    # -- watching protocols --------------------------------------------------------------

    def track(self, protocol: Protocol) -> Protocol:
        """Watch ``protocol``'s clients and received messages; returns it.

        Its callback is wrapped in place, so that code holding the Protocol (for
        ``ctx.connections(protocol)``, say) keeps the object the context uses.
        """
        if protocol.name in self.meters or getattr(protocol.callback, "tracked_by", None):
            # Wrapped twice, its traffic would be counted twice, or by another context.
            raise ValueError(f"protocol {protocol.name!r} is tracked already")
        meter = self.meters[protocol.name] = Meter(self.window, clock=self._clock)
        inner = protocol.callback

        def callback(conn: Connection | None, reason: Reason, user: Any, payload: Any) -> Any:
            if conn is not None:
                if reason is _RECEIVE:
                    meter.rx(len(payload), 1 if conn.is_final_fragment() else 0)
                    self._changed()
                elif reason is _ESTABLISHED:
                    self._join(conn, meter)
                elif reason is _CLOSED:
                    # After the protocol's own CLOSED, so that a leaving lws-status
                    # member is no longer asked for the document about its leaving.
                    try:
                        return inner(conn, reason, user, payload)
                    finally:
                        self._leave(conn)
            return inner(conn, reason, user, payload)

        callback.tracked_by = self  # type: ignore[attr-defined]
        protocol.callback = callback
        return protocol

    def sent(self, conn: Connection, nbytes: int) -> None:
        """Count one message of ``nbytes`` written on ``conn`` (call after conn.write)."""
        client = self.clients.get(conn)
        if client is not None:
            client.meter.tx(nbytes)
            self._changed()

    def sent_many(self, conns: Iterable[Connection], nbytes: int, messages: int = 1) -> None:
        """Count ``messages`` messages, ``nbytes`` in all, written on each of ``conns``
        (a broadcast): what :meth:`sent` per connection and message would count, with
        one meter update per protocol instead of one per connection."""
        clients = self.clients
        counts: dict[Meter, int] = {}
        for conn in conns:
            client = clients.get(conn)
            if client is not None:
                counts[client.meter] = counts.get(client.meter, 0) + 1
        for meter, n in counts.items():
            meter.tx(nbytes * n, messages * n)
        if counts:
            self._changed()

    def _join(self, conn: Connection, meter: Meter) -> None:
        # The handshake headers go away when ESTABLISHED returns: copy the agent now.
        agent = conn.header("user-agent") or ""
        name = conn.protocol.name
        self.clients[conn] = _Client(_peer_text(conn.peer), agent, name, meter, self._clock())
        self._changed()

    def _leave(self, conn: Connection) -> None:
        if self.clients.pop(conn, None) is not None:
            self._changed()

    # -- the document --------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The status as a JSON-able dict: what ``/stats`` serves and members get."""
        now = self._clock()
        per_proto: dict[str, dict[str, Any]] = {
            name: {"connections": 0, **meter.as_dict()} for name, meter in self.meters.items()
        }
        clients: list[dict[str, Any]] = []
        for c in self.clients.values():
            per_proto[c.protocol]["connections"] += 1
            if len(clients) < MAX_LISTED:
                clients.append(
                    {
                        "peer": c.peer,
                        "user_agent": c.user_agent,
                        "protocol": c.protocol,
                        "connected_at": round(c.connected_at, 3),
                        "seconds": round(now - c.started, 1),
                    }
                )
        return {
            "connections": len(self.clients),
            "time": round(time.time(), 3),
            "window": self.window,
            "clients": clients,
            "protocols": per_proto,
        }

    def document(self) -> str:
        """:meth:`snapshot` as JSON, made once per change however many members read it."""
        version, text = self._doc
        if version != self._version:
            text = json.dumps(self.snapshot(), separators=(",", ":"))
            self._doc = (self._version, text)
        return text

    def serve_http(self, conn: Connection) -> None:
        """Answer the current HTTP request with :meth:`snapshot` (``GET /stats``)."""
        if conn.http_method != "GET":
            conn.http_response(405, "<h1>405 Method Not Allowed</h1>", headers=[("Allow", "GET")])
            return
        # Made afresh, not the members' cached document: a poller wants it current.
        body = json.dumps(self.snapshot(), separators=(",", ":"))
        conn.http_response(200, body, "application/json", [("Cache-Control", "no-store")])

    # -- pushing to the members ----------------------------------------------------------

    def _changed(self) -> None:
        self._version += 1
        if self._idle:
            for conn in list(self._idle):
                self._schedule(conn)

    def _schedule(self, conn: Connection) -> None:
        """Ask for conn's next document: now, or when its interval is over."""
        self._idle.discard(conn)
        delay = self._members[conn].last_sent + self.interval - self._clock()
        if delay <= 0:
            conn.callback_on_writable()
        else:
            conn.set_timer(delay)

    def _busy(self) -> bool:
        """Rates that are not 0 yet: the document changes as the window slides."""
        return any(m.busy() for name, m in self.meters.items() if name != self.NAME)

    def _callback(self, conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        if conn is None:
            return 0
        if reason is Reason.ESTABLISHED:  # after track's wrapper has listed it
            self._members[conn] = _Member()
            self._schedule(conn)  # its first document at once
        elif reason is Reason.TIMER:
            if conn in self._members:
                conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE:
            member = self._members.get(conn)
            if member is None:
                return 0
            if member.version == self._version:
                self._idle.add(conn)  # nothing new since its last document
                return 0
            text = self.document()
            n = conn.write(text, WriteKind.TEXT)
            member.version = self._version
            member.last_sent = self._clock()
            self.meters[self.NAME].tx(n)  # counted, but not a change (see the class)
            self._idle.add(conn)
            if self._busy():
                # The rates move although nothing happens: send them again until they
                # are back to 0, so the panel never freezes on old traffic.
                self._changed()
        elif reason is Reason.CLOSED:
            self._members.pop(conn, None)
            self._idle.discard(conn)
        return 0
