"""The WebSocket role's handshake completion (lws ``roles/ws``): from the 101 to ESTABLISHED.

Server side: the subprotocol is chosen from the client's list (a 400 for none we know,
unless ``any_subprotocol``), FILTER_PROTOCOL_CONNECTION may refuse (403), the
protocol's message limit and permessage-deflate are applied, and ESTABLISHED is
delivered with the handshake headers readable.  Client side: CLIENT_FILTER_PRE_ESTABLISH
may refuse the 101, then CLIENT_ESTABLISHED, and a WRITEABLE asked for before it is
delivered now.  Both start the keepalive pings when ``ping_interval`` is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lwsbridge import log as _log
from lwsbridge.connection import Connection
from lwsbridge.core.events import Established, UpgradeRequest
from lwsbridge.lifecycle import Phase, TimerKind
from lwsbridge.log import NOTICE, logger
from lwsbridge.vocabulary import Protocol, Reason

if TYPE_CHECKING:
    from lwsbridge.context import Context
    from lwsbridge.service import Service

__all__ = ["WsRole"]

_WS = Phase.WS
# Looked up once (an Enum class's attribute read costs a metaclass __getattr__ hook):
# every connection's upgrade reads them.
_FILTER_PROTOCOL_CONNECTION = Reason.FILTER_PROTOCOL_CONNECTION
_ESTABLISHED = Reason.ESTABLISHED
_PROTOCOL_TIMER, _PING_TIMER = TimerKind.PROTOCOL, TimerKind.PING


class WsRole:
    __slots__ = ("_ctx", "_svc")

    def __init__(self, context: Context, service: Service) -> None:
        self._ctx = context  # its configuration and protocols
        self._svc = service

    def upgrade(self, conn: Connection, ev: UpgradeRequest) -> None:
        """A server's upgrade request: pick the protocol, filter, accept, ESTABLISHED."""
        ctx = self._ctx
        svc = self._svc
        core = conn.core
        if ctx.draining:
            core.reject(503, "server going away")
            svc.queue_output(conn)
            return
        chosen: Protocol | None = None
        subprotocol: str | None = None
        offered = ev.subprotocols
        for name in offered:
            if name in ctx.protocols_by_name:
                chosen, subprotocol = ctx.protocols_by_name[name], name
                break
        if chosen is None:
            if offered and not ctx.any_subprotocol:
                # Browsers fail a connection without the subprotocol they asked for;
                # say so now rather than let them.
                logger.log(NOTICE, "%r: no supported subprotocol in %s", conn, offered)
                core.reject(400, f"unsupported subprotocol(s): {', '.join(offered)}")
                svc.queue_output(conn)
                return
            chosen = ctx.protocols[0]
            subprotocol = offered[0] if offered else None
        conn.protocol = chosen
        conn.handshake_headers = ev.headers
        if chosen.user_factory is not None:
            conn.user = chosen.user_factory()
        if svc.call(conn, chosen, _FILTER_PROTOCOL_CONNECTION, ev.target):
            core.reject(403, "refused by the server")
            svc.queue_output(conn)
            return
        limit = chosen.max_message_size
        if limit is not None:
            core.max_message_size = limit
        factory = chosen.deflate_factory()
        ext = factory.accept(ev.extensions) if factory is not None else None
        svc.timers.schedule(conn, _PROTOCOL_TIMER, None)
        conn.enter(_WS)
        conn.established = True
        # accept() may parse frames already received; hold their events until
        # ESTABLISHED has been delivered.
        core.accept(subprotocol, [ext] if ext is not None else ())
        _log.handshake(
            conn,
            ev.target,
            subprotocol,
            ev.extensions,
            [ext.response()] if ext is not None else (),
            ev.headers,
        )
        svc.queue_output(conn)
        r = svc.call(conn, chosen, _ESTABLISHED, None)
        conn.handshake_headers = None
        if r:
            svc.close_gracefully(conn)
        elif ctx.ping_interval and conn.phase is _WS:
            svc.timers.schedule(conn, _PING_TIMER, ctx.ping_interval)

    def client_established(self, conn: Connection, ev: Established) -> None:
        """A client's 101 is in: CLIENT_FILTER_PRE_ESTABLISH, then CLIENT_ESTABLISHED."""
        ctx = self._ctx
        conn.handshake_headers = ev.headers
        if self._svc.call(conn, conn.protocol, Reason.CLIENT_FILTER_PRE_ESTABLISH, ev):
            conn.handshake_headers = None
            self._svc.kill(conn, "refused by CLIENT_FILTER_PRE_ESTABLISH")
            return
        self._svc.timers.schedule(conn, TimerKind.PROTOCOL, None)
        conn.enter(_WS)
        conn.established = True
        path = conn.client_info.path if conn.client_info is not None else "/"
        _log.handshake(conn, path, ev.subprotocol, None, ev.extensions, ev.headers)
        r = self._svc.call(conn, conn.protocol, Reason.CLIENT_ESTABLISHED, ev.subprotocol)
        conn.handshake_headers = None
        if r:
            self._svc.close_gracefully(conn)
            return
        if conn.want_writable:
            self._svc.make_ready(conn)  # asked for before the connection was established
        if ctx.ping_interval and conn.phase is _WS:
            self._svc.timers.schedule(conn, TimerKind.PING, ctx.ping_interval)
