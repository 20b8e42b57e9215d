"""The listener (lws ``roles/listen``): the listening socket, accept batches, the limit.

It accepts up to a batch per readiness, keeps the connection limit (lws derives it
from RLIMIT_NOFILE less the fds in use) and answers 503 above it, once per socket,
with one log line per burst.  When the process runs out of fds it frees a spare fd,
takes the connection off the backlog and refuses it, so the listener never spins
(libev's trick).  It hands accepted, configured sockets to the context.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import socket
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from lwsbridge.keepalive import TCPKeepalive
from lwsbridge.log import NOTICE, logger

__all__ = ["ACCEPT_BATCH", "Listener", "connection_limit", "reuse_port_supported"]

ACCEPT_BATCH = 64

_BUSY_BODY = b"server at its connection limit\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\n"
    b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


def reuse_port_supported() -> bool:
    """Whether SO_REUSEPORT balances connections over the sockets sharing a port.

    Only Linux (3.9+) balances; the BSDs and macOS have the option but hand every
    connection to the last socket bound, so workers would not share the load there.
    """
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def _check_reuse_port() -> None:
    if not reuse_port_supported():
        raise ValueError(
            f"SO_REUSEPORT load balancing needs Linux (this is {sys.platform}): run one worker"
        )


def _count_open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the listing's own fd
    except OSError:
        return 3  # stdin, stdout, stderr


def connection_limit(max_connections: int | None) -> int:
    """lws's limit: RLIMIT_NOFILE less the fds open now and a few spare; logged.

    Raises ValueError (with what to do) when there is no room at all.
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # a few for the host and for the context's own pipe, listener and spare fd
    in_use = _count_open_fds()
    limit = (soft if soft != resource.RLIM_INFINITY else 1 << 20) - in_use - 8
    if limit < 1:
        raise ValueError(
            f"RLIMIT_NOFILE soft limit {soft} leaves no room for connections "
            f"({in_use} fds already open); raise it with 'ulimit -n'"
        )
    chosen = min(max_connections or limit, limit)
    logger.log(
        NOTICE,
        "connection limit %d (RLIMIT_NOFILE %s, %d fds in use%s)",
        chosen,
        soft,
        in_use,
        ", lowered by max_connections" if chosen < limit else "",
    )
    return chosen


class _ListenSocket(socket.socket):
    """The listening socket, with an accept that skips ``socket.accept``'s Python work.

    ``socket.socket.accept`` reads ``self.family`` and ``self.type`` (two properties
    that convert to enums: 9 Python calls) and checks the default timeout, for every
    connection.  The family, type and protocol are known here, so they go in as ints;
    the socket made is the same ``socket.socket`` (the caller sets its blocking mode,
    as the stdlib's accept leaves it to the default timeout).
    """

    __slots__ = ()

    if TYPE_CHECKING:  # the C method socket.accept is built on, not in typeshed

        def _accept(self) -> tuple[int, Any]: ...

    def accept_plain(self, family: int) -> tuple[socket.socket, Any]:
        fd, addr = self._accept()
        return socket.socket(family, socket.SOCK_STREAM, 0, fileno=fd), addr


class Listener:
    """A bound, listening, non-blocking socket and what accepting from it takes."""

    __slots__ = (
        "_family",
        "_nodelay_inherited",
        "_refused_burst",
        "_sock",
        "_spare_fd",
        "keepalive",
        "limit",
    )

    def __init__(
        self,
        interface: str | None,
        port: int,
        backlog: int,
        *,
        limit: int,
        keepalive: TCPKeepalive,
        reuse_port: bool = False,
    ) -> None:
        host = interface or ""
        family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
        if reuse_port:
            _check_reuse_port()
        sock = _ListenSocket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                # Several processes bind the same port; the kernel spreads new
                # connections over their sockets (lwsbridge.workers).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            sock.listen(backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        # Linux copies TCP_NODELAY from the listener to every socket accepted from it,
        # which saves a setsockopt per connection; whether this kernel does is seen on
        # the first connection (accept()), and where it does not, each gets its own.
        self._nodelay_inherited: bool | None = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            self._nodelay_inherited = False
        self._family = int(family)
        self._sock = sock
        self._spare_fd: int | None = os.open(os.devnull, os.O_RDONLY)
        self._refused_burst = 0
        self.limit = limit
        self.keepalive = keepalive

    @property
    def fd(self) -> int:
        return self._sock.fileno()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def accept(self, live: Callable[[], int]) -> Iterator[tuple[socket.socket, Any]]:
        """Accepted sockets (non-blocking, NODELAY, keepalive set), one batch at most.

        ``live()`` is the number of connections now: at the limit, a socket gets the
        503 and is closed here instead of being yielded.
        """
        lsock = self._sock
        family = self._family
        keepalive = self.keepalive
        for _ in range(ACCEPT_BATCH):
            try:
                sock, peer = lsock.accept_plain(family)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE) and self._spare_fd is not None:
                    self._refuse_out_of_fds()
                    return
                logger.warning("accept failed: %s", exc)
                return
            if live() >= self.limit:
                self._refuse_over_limit(sock, peer)
                continue
            if self._refused_burst:
                logger.log(NOTICE, "accepting again after refusing %d", self._refused_burst)
                self._refused_burst = 0
            if keepalive.time:  # apply() is a no-op without it: no call
                keepalive.apply(sock)
            sock.setblocking(False)
            if not self._nodelay_inherited:
                self._set_nodelay(sock)
            yield sock, peer

    def _set_nodelay(self, sock: socket.socket) -> None:
        """TCP_NODELAY on ``sock``, unless it came with it from the listener (then not again)."""
        try:
            if self._nodelay_inherited is None:
                self._nodelay_inherited = bool(
                    sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                )
                if self._nodelay_inherited:
                    return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def _refuse_out_of_fds(self) -> None:
        assert self._spare_fd is not None
        os.close(self._spare_fd)
        self._spare_fd = None
        with contextlib.suppress(OSError):
            s, p = self._sock.accept()
            s.close()
            logger.log(NOTICE, "refused connection from %s: out of file descriptors", p)
        with contextlib.suppress(OSError):
            self._spare_fd = os.open(os.devnull, os.O_RDONLY)

    def _refuse_over_limit(self, sock: socket.socket, peer: Any) -> None:
        """At the connection limit: say 503 if the socket takes it at once, and close."""
        with contextlib.suppress(OSError):
            sock.setblocking(False)
            sock.send(_BUSY)
        sock.close()
        if not self._refused_burst:
            logger.log(
                NOTICE,
                "at the limit of %d connections: refusing new ones (first: %s)",
                self.limit,
                peer,
            )
        self._refused_burst += 1

    def close(self) -> None:
        self._sock.close()
        if self._spare_fd is not None:
            os.close(self._spare_fd)
            self._spare_fd = None
