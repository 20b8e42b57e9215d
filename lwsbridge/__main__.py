"""``python -m lwsbridge URL``: an interactive WebSocket client, as ``python -m websockets``.

Each line typed on standard input goes out as one text message; every message that
comes in is printed on standard output as ``< text`` (binary: ``< (binary) <hex>``).
End of input (Ctrl-D) closes the connection with 1000 and exits 0, and so does
Ctrl-C.  Status lines (connected, closed) go to standard error, and so does any error,
as one line with a non-zero exit: a bad URL, a missing CA file, a connection that
cannot be made.

It is built on the library's own client and built-in loop: ``Context.client_connect``
and ``Context.service``.  Standard input is read by a helper thread that hands each
line over with ``Context.cancel_service`` (the one thread-safe call), so the context
is only ever touched by the thread that services it, whatever standard input is (a
terminal, a pipe or a file).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import sys
import threading
import urllib.parse
from typing import Any

from lwsbridge import __version__
from lwsbridge.context import ClientConnectInfo, Connection, Context, Protocol, Reason, WriteKind
from lwsbridge.log import LLL_ERR, LLL_WARN, set_log_level
from lwsbridge.tls import ClientTLS

__all__ = ["InteractiveClient", "main", "parse_url"]

PROG = "python -m lwsbridge"


class UsageError(Exception):
    """A bad command-line value; the message names it."""


def parse_url(url: str) -> tuple[str, int, str, bool]:
    """``ws[s]://host[:port][/path][?query]`` -> (host, port, path, tls); UsageError if not."""
    try:
        u = urllib.parse.urlsplit(url)
        port = u.port  # raises ValueError for a port that is not a number or out of range
    except ValueError as exc:
        raise UsageError(f"bad URL {url!r}: {exc}") from None
    if u.scheme not in ("ws", "wss"):
        raise UsageError(f"bad URL {url!r}: the scheme must be ws:// or wss://")
    if not u.hostname:
        raise UsageError(f"bad URL {url!r}: no host name")
    tls = u.scheme == "wss"
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    return u.hostname, port or (443 if tls else 80), path, tls


class InteractiveClient:
    """One connection: stdin lines out as text messages, messages in printed.

    ``lines`` is fed from another thread (``feed``/``feed_eof``); everything else runs
    in the thread that services ``context``.
    """

    def __init__(self, url: str, out: Any = None, err: Any = None) -> None:
        self.url = url
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.context: Context | None = None
        self.conn: Connection | None = None
        # deque append/popleft are atomic: the reader thread appends, the service
        # thread pops.  None marks the end of input.
        self.lines: collections.deque[str | None] = collections.deque()
        self.eof = False
        self.established = False
        self.done = False
        self.closing = False
        self.error: str | None = None
        self.peer_close: tuple[int, str] | None = None
        self.parts: list[bytes] = []

    # -- from the reader thread ---------------------------------------------------------

    def feed(self, line: str) -> None:
        self.lines.append(line)
        if self.context is not None:
            self.context.cancel_service()

    def feed_eof(self) -> None:
        self.lines.append(None)
        if self.context is not None:
            self.context.cancel_service()

    # -- in the service thread ----------------------------------------------------------

    def _pending(self) -> bool:
        """True when a line waits; takes the end-of-input mark off the queue."""
        while self.lines and self.lines[0] is None:
            self.lines.popleft()
            self.eof = True
        return bool(self.lines)

    def _kick(self) -> None:
        """After new input: ask for WRITEABLE, or close once input ended and all is sent."""
        conn = self.conn
        if conn is None or not self.established or self.closing:
            return
        if self._pending():
            conn.callback_on_writable()
        elif self.eof:
            self.closing = True
            # Closing from outside a callback: the context sends the close frame.
            conn.context.close(conn, 1000, "")

    def callback(self, conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        if reason is Reason.EVENT_WAIT_CANCELLED:
            self._kick()
        elif conn is None:
            return 0
        elif reason is Reason.CLIENT_ESTABLISHED:
            self.conn, self.established = conn, True
            print(f"Connected to {self.url}", file=self.err, flush=True)
            self._kick()
        elif reason is Reason.CLIENT_RECEIVE:
            # Gather the pieces of one message: a large message comes in several.
            self.parts.append(bytes(payload))
            if conn.is_final_fragment():
                data = b"".join(self.parts)
                self.parts.clear()
                if conn.frame_is_binary():
                    print(f"< (binary) {data.hex()}", file=self.out, flush=True)
                else:
                    print(f"< {data.decode('utf-8')}", file=self.out, flush=True)
        elif reason is Reason.CLIENT_WRITEABLE:
            if self._pending():
                line = self.lines.popleft()
                assert line is not None  # _pending() took the end marks off the front
                conn.write(line, WriteKind.TEXT)
                if self._pending() or self.eof:
                    conn.callback_on_writable()  # the next line, or the close after it
            elif self.eof and not self.closing:
                self.closing = True
                conn.close_reason(1000, "")
                return -1
        elif reason is Reason.WS_PEER_INITIATED_CLOSE:
            self.peer_close = (payload.code, payload.reason)
        elif reason is Reason.CLIENT_CONNECTION_ERROR:
            self.error = str(payload)
            self.done = True
        elif reason is Reason.CLOSED:
            self.done = True
        return 0

    def run(self, host: str, port: int, path: str, tls: ClientTLS | bool, **options: Any) -> int:
        """Connect and service until the connection ends; the exit status."""
        ctx = self.context = Context(
            [Protocol("lwsbridge-cli", self.callback)], port=None, **options
        )
        try:
            ctx.client_connect(ClientConnectInfo(host, port, path, ssl=tls))
            if self.lines:
                ctx.cancel_service()  # lines fed before the context existed
            while not self.done:
                ctx.service(1000)
        finally:
            ctx.destroy()
        if self.error is not None:
            print(f"{PROG}: cannot connect to {self.url}: {self.error}", file=self.err)
            return 1
        if self.peer_close is not None:
            code, text = self.peer_close
            print(f"Connection closed by the server: {code} {text}".rstrip(), file=self.err)
        elif not self.closing:
            print("Connection lost (no close frame)", file=self.err)
            return 1
        return 0


def _read_stdin(client: InteractiveClient, fd: int) -> None:
    # os.read, not sys.stdin: a daemon thread blocked inside the buffered reader holds
    # its lock, and the interpreter's shutdown would then abort on it.
    pending = b""
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                client.feed(raw.rstrip(b"\r").decode("utf-8", "replace"))
        if pending:
            client.feed(pending.decode("utf-8", "replace"))
    except OSError:
        pass  # stdin closed under us: the same as end of input
    client.feed_eof()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Interactive WebSocket client: type lines to send them as text "
        "messages; received messages are printed.  Ctrl-D or Ctrl-C ends it.",
    )
    parser.add_argument("url", metavar="URL", help="ws://host[:port]/path or wss://...")
    parser.add_argument("--ca", metavar="FILE", help="CA certificates to verify a wss server")
    parser.add_argument(
        "--insecure", action="store_true", help="wss: accept any server certificate"
    )
    parser.add_argument(
        "--max-size",
        type=int,
        default=64 << 20,
        metavar="BYTES",
        help="largest message accepted (default 64 MiB)",
    )
    parser.add_argument("--version", action="version", version=f"lwsbridge {__version__}")
    args = parser.parse_args(argv)
    try:
        host, port, path, tls = parse_url(args.url)
        if args.ca is not None and not os.path.isfile(args.ca):
            raise UsageError(f"CA file {args.ca!r} not found")
        if args.max_size <= 0:
            raise UsageError(f"--max-size must be positive, not {args.max_size}")
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    # A terminal tool: the library's notices (limits, connection info) would mix with
    # the messages; warnings and errors still show.
    set_log_level(LLL_ERR | LLL_WARN)
    ssl: ClientTLS | bool = tls
    if tls and (args.ca is not None or args.insecure):
        ssl = ClientTLS(ca_file=args.ca, insecure=args.insecure)
    client = InteractiveClient(args.url)
    reader = threading.Thread(
        target=_read_stdin, args=(client, sys.stdin.fileno()), name="stdin", daemon=True
    )
    reader.start()
    try:
        return client.run(host, port, path, ssl, max_message_size=args.max_size)
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            print(file=sys.stderr)
        return 0


if __name__ == "__main__":
    sys.exit(main())
