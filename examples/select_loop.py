"""The external poll example (lws test-server-extpoll): the host owns the pollfd array.

The host keeps a list of :class:`~lwsbridge.context.PollFd`, fed only by the
ADD_POLL_FD / DEL_POLL_FD / SET_MODE_POLL_FD / CLEAR_MODE_POLL_FD callbacks to
protocol 0, waits on it with ``select.poll`` and calls ``context.service_fd`` for
every ready fd -- lwsbridge's and its own (stdin, or a pipe when stdin is not one):
service_fd leaves a foreign fd's revents alone, and the host handles those itself.

Every WebSocket message is echoed back; every line read on stdin is sent to every
connected client.  ``python examples/select_loop.py --port 7681``
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
from typing import Any

from lwsbridge.apps.echo_protocol import EchoSession, echo_callback
from lwsbridge.context import Connection, Context, PollFd, Protocol, Reason

POLLIN = select.POLLIN


class Host:
    """The host's loop: a pollfd array, a poll object mirroring it, its own stdin."""

    def __init__(self) -> None:
        self.pollfds: list[PollFd] = []
        self.index: dict[int, PollFd] = {}
        self.poll = select.poll()
        self.context: Context | None = None
        self.running = True

    # protocol 0 gets the poll callbacks (and the echo protocol's work)
    def callback(self, conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        if reason is Reason.ADD_POLL_FD:
            pfd = PollFd(payload.fd, payload.events)
            self.pollfds.append(pfd)
            self.index[pfd.fd] = pfd
            self.poll.register(pfd.fd, pfd.events)
        elif reason is Reason.DEL_POLL_FD:
            pfd = self.index.pop(payload.fd)
            self.pollfds.remove(pfd)
            self.poll.unregister(pfd.fd)
        elif reason in (Reason.SET_MODE_POLL_FD, Reason.CLEAR_MODE_POLL_FD):
            pfd = self.index[payload.fd]
            pfd.events = payload.events
            self.poll.modify(pfd.fd, pfd.events)
        else:
            return echo_callback(conn, reason, user, payload)
        return 0

    def watch_own(self, fd: int) -> None:
        pfd = PollFd(fd, POLLIN)
        self.pollfds.append(pfd)
        self.index[fd] = pfd
        self.poll.register(fd, POLLIN)

    def unwatch_own(self, fd: int) -> None:
        pfd = self.index.pop(fd)
        self.pollfds.remove(pfd)
        self.poll.unregister(fd)

    def broadcast(self, line: bytes) -> None:
        ctx = self.context
        assert ctx is not None
        for conn in ctx.connections():
            session: EchoSession = conn.user
            session.queue.append((line, False))
            conn.callback_on_writable()

    def run(self, own_fd: int) -> None:
        ctx = self.context
        assert ctx is not None
        pending = b""
        while self.running:
            nt = ctx.next_timeout()
            for fd, revents in self.poll.poll(1000 if nt is None else min(nt, 1000)):
                pfd = self.index.get(fd)
                if pfd is None:
                    continue  # closed earlier in this round
                pfd.revents = revents
                if ctx.service_fd(pfd) or pfd.revents == 0:
                    continue  # lwsbridge's fd, serviced
                # Our own fd: service_fd left its revents alone.
                pfd.revents = 0
                data = os.read(fd, 4096)
                if not data:
                    self.unwatch_own(fd)
                    continue
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self.broadcast(line)
            ctx.service_pending()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--port", type=int, default=7681)
    parser.add_argument("-i", "--interface", default="127.0.0.1")
    args = parser.parse_args(argv)

    host = Host()
    ctx = Context(
        [Protocol("lws-echo", host.callback, EchoSession)],
        port=args.port,
        interface=args.interface,
        any_subprotocol=True,
    )
    host.context = ctx
    try:
        own = sys.stdin.fileno()
        os.fstat(own)
    except (OSError, ValueError):
        own, _w = os.pipe()  # no stdin: a pipe nobody writes, watched all the same
    host.watch_own(own)

    def stop(signum: int, frame: object) -> None:
        host.running = False
        ctx.cancel_service()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"select_loop example: ws://{args.interface}:{ctx.port}/", flush=True)
    try:
        host.run(own)
    finally:
        ctx.destroy()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
