"""The client connector (lws ``core-net/client``): name resolution and non-blocking connect.

A numeric address is "resolved" at once; a host name is resolved by ``getaddrinfo``
on a helper thread, whose result comes back through the :class:`~lwsbridge.wakeup.Wakeup`
and is taken by the service thread with :meth:`Connector.take_resolved`.  After
:meth:`Connector.close` a late result is dropped and the wakeup is not touched.
The connector also opens the socket, starts the non-blocking connect, reads its
outcome (SO_ERROR) and builds each client's TLS transport.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import ssl
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from lwsbridge.keepalive import TCPKeepalive
from lwsbridge.tls import ClientTLS
from lwsbridge.tls_transport import TLSTransport
from lwsbridge.wakeup import RESOLVED, Wakeup

if TYPE_CHECKING:
    from lwsbridge.connection import Connection
    from lwsbridge.vocabulary import ClientConnectInfo

__all__ = ["Addresses", "Connector"]

#: what resolving gives: ``[(family, sockaddr), ...]``, or the OSError
Addresses = list[tuple[int, Any]]


class Connector:
    __slots__ = (
        "_closed",
        "_lock",
        "_resolved",
        "_tls_cache",
        "_tls_default",
        "_wakeup",
        "keepalive",
        "resolving",
    )

    def __init__(
        self, wakeup: Wakeup, keepalive: TCPKeepalive, tls_default: ClientTLS | None
    ) -> None:
        self._wakeup = wakeup
        self.keepalive = keepalive
        self._tls_default = tls_default
        self._tls_cache: dict[int, ssl.SSLContext] = {}
        #: clients whose address is not known yet
        self.resolving: set[Connection] = set()
        self._resolved: deque[tuple[Connection, Addresses | OSError]] = deque()
        self._lock = threading.Lock()
        self._closed = False

    # -- resolving -----------------------------------------------------------------------

    def resolve(self, conn: Connection, host: str, port: int) -> Addresses | None:
        """The addresses now for a numeric host; else None and a helper thread resolves."""
        self.resolving.add(conn)
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            threading.Thread(
                target=self._resolve_thread, args=(conn, host, port), daemon=True
            ).start()
            return None
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return [(family, (host, port))]

    def _resolve_thread(self, conn: Connection, host: str, port: int) -> None:
        result: Addresses | OSError
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            result = [(fam, addr) for fam, _t, _p, _c, addr in infos]
        except OSError as exc:
            result = exc
        with self._lock:
            if self._closed:
                return  # the context is gone: drop the result, touch nothing
            self._resolved.append((conn, result))
        self._wakeup.wake(RESOLVED)

    def take_resolved(self) -> list[tuple[Connection, Addresses | OSError]]:
        """Results the helper threads delivered since last time (service thread)."""
        with self._lock:
            out = list(self._resolved)
            self._resolved.clear()
        return out

    def settle(self, conn: Connection) -> bool:
        """True (once) if ``conn`` was waiting for its address; it no longer is."""
        if conn in self.resolving:
            self.resolving.discard(conn)
            return True
        return False

    # -- connecting ----------------------------------------------------------------------

    def open(self, family: int, addr: Any) -> tuple[socket.socket, str | None]:
        """A non-blocking socket with its connect started; the error text if it failed."""
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.keepalive.apply(sock)
        err = sock.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
            return sock, f"connect to {addr[0]} port {addr[1]} failed: {os.strerror(err)}"
        return sock, None

    @staticmethod
    def connect_error(sock: socket.socket, peer: Any) -> str | None:
        """After the socket became writable: None if connected, else why not."""
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            return f"connect to {peer[0]} port {peer[1]} failed: {os.strerror(err)}"
        return None

    @staticmethod
    def request_target(info: ClientConnectInfo) -> tuple[str, list[str]]:
        """The Host header and the subprotocols to offer for a client's upgrade request."""
        if info.subprotocols is not None:
            offered = list(info.subprotocols)
        else:
            offered = [info.protocol] if info.protocol else []
        host = info.host
        if host is None:
            h = f"[{info.address}]" if ":" in info.address else info.address
            host = h if info.port in (80, 443) else f"{h}:{info.port}"
        return host, offered

    def tls_for(self, info: ClientConnectInfo) -> TLSTransport:
        """The TLS transport for a client asking for ``ssl`` (its settings or the default)."""
        settings = info.ssl if isinstance(info.ssl, ClientTLS) else self._tls_default
        settings = settings or ClientTLS()
        key = id(settings)
        ctx = self._tls_cache.get(key)
        if ctx is None:
            ctx = self._tls_cache[key] = settings.build()
        return TLSTransport(
            ctx,
            server_side=False,
            hostname=info.host or info.address,
            self_signed_only=settings.allow_self_signed and not settings.insecure,
        )

    def close(self) -> None:
        """No more results: every later one is dropped."""
        with self._lock:
            self._closed = True
            self._resolved.clear()
        self.resolving.clear()
