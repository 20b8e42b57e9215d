"""A WebSocket <-> ZeroMQ bridge in one thread, on the host's ``zmq.Poller``.

* ``--zmq-pub ENDPOINT``: a publisher's PUB socket, bound there (e.g.
  ``tcp://127.0.0.1:5556``); the bridge's SUB connects to it and subscribes to
  everything.  Every message published reaches every WebSocket client (as text when
  it is UTF-8, else binary).
* ``--zmq-push ENDPOINT``: the bridge's PUSH socket binds there; every message a
  WebSocket client sends goes out on it, for PULL sockets that connect.
* A bare port number means ``tcp://127.0.0.1:PORT``.

Overflow policy: each WebSocket client has a queue of at most ``--max-queue``
messages (default 64) waiting to be written.  When a published message finds a
client's queue full, the **oldest** queued message is dropped to make room, and that
client's ``dropped`` counter (and the bridge's total) goes up: a slow client sees
the newest data, with gaps, and never makes the bridge buffer without bound.  Only
one message per client is ever in the kernel-side output at a time (lwsbridge's
WRITEABLE discipline).  ``GET /stats`` answers ``{"clients": N, "dropped": TOTAL,
"published": P, "pushed": Q}`` as JSON.

Publishing to the PUSH side never blocks: when no PULL is connected the message is
counted in ``push_dropped`` and discarded (``zmq.NOBLOCK``).

``python examples/zmq_loop.py --port 7681 --zmq-pub 5556 --zmq-push 5557``
"""

from __future__ import annotations

import argparse
import json
import signal
from collections import deque
from typing import Any

import zmq

from lwsbridge.adapters.zmq_poller import ZmqPollerAdapter
from lwsbridge.context import Connection, Context, Protocol, Reason, WriteKind


def endpoint(value: str) -> str:
    return f"tcp://127.0.0.1:{value}" if value.isdigit() else value


class Session:
    __slots__ = ("dropped", "parts", "queue")

    def __init__(self) -> None:
        self.queue: deque[bytes] = deque()
        self.parts: list[bytes] = []
        self.dropped = 0


class Bridge:
    def __init__(self, push: Any, max_queue: int) -> None:
        self.push = push
        self.max_queue = max_queue
        self.stats = {"clients": 0, "dropped": 0, "published": 0, "pushed": 0, "push_dropped": 0}
        self.context: Context | None = None

    def callback(self, conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        if conn is None:
            return 0
        s: Session = user
        if reason is Reason.ESTABLISHED:
            self.stats["clients"] += 1
        elif reason is Reason.CLOSED:
            self.stats["clients"] -= 1
        elif reason is Reason.RECEIVE:
            s.parts.append(bytes(payload))
            if conn.is_final_fragment():
                msg = b"".join(s.parts)
                s.parts.clear()
                try:
                    self.push.send(msg, zmq.NOBLOCK)
                    self.stats["pushed"] += 1
                except zmq.Again:
                    self.stats["push_dropped"] += 1
        elif reason is Reason.SERVER_WRITEABLE and s.queue:
            msg = s.queue.popleft()
            try:
                text = msg.decode("utf-8")
            except UnicodeDecodeError:
                conn.write(msg, WriteKind.BINARY)
            else:
                conn.write(text, WriteKind.TEXT)
            if s.queue:
                conn.callback_on_writable()
        elif reason is Reason.HTTP:
            if str(payload).split("?", 1)[0] == "/stats":
                conn.http_response(200, json.dumps(self.stats), "application/json")
            else:
                conn.http_response(200, "<h1>lwsbridge zmq bridge</h1>\n")
        return 0

    def publish(self, msg: bytes) -> None:
        assert self.context is not None
        self.stats["published"] += 1
        for conn in self.context.connections():
            s: Session = conn.user
            if len(s.queue) >= self.max_queue:
                s.queue.popleft()  # drop oldest
                s.dropped += 1
                self.stats["dropped"] += 1
            s.queue.append(msg)
            conn.callback_on_writable()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-p", "--port", type=int, default=7681)
    parser.add_argument("-i", "--interface", default="127.0.0.1")
    parser.add_argument("--zmq-pub", required=True, help="the publisher's PUB endpoint")
    parser.add_argument("--zmq-push", required=True, help="where the bridge's PUSH binds")
    parser.add_argument("--max-queue", type=int, default=64)
    args = parser.parse_args(argv)

    zctx = zmq.Context()
    sub = zctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(endpoint(args.zmq_pub))
    push = zctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.bind(endpoint(args.zmq_push))

    bridge = Bridge(push, args.max_queue)
    ctx = Context(
        [Protocol("zmq-bridge", bridge.callback, Session)],
        port=args.port,
        interface=args.interface,
        any_subprotocol=True,
    )
    bridge.context = ctx
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    ws = ZmqPollerAdapter(ctx, poller)
    running = [True]

    def stop(signum: int, frame: object) -> None:
        running[0] = False
        ctx.cancel_service()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"zmq_loop example: ws://{args.interface}:{ctx.port}/", flush=True)
    try:
        while running[0]:
            ready = ws.handle(dict(poller.poll(ws.timeout(1000))))
            if ready.get(sub, 0) & zmq.POLLIN:
                for _ in range(256):  # bounded per round
                    try:
                        bridge.publish(sub.recv(zmq.NOBLOCK))
                    except zmq.Again:
                        break
    finally:
        ws.close()
        ctx.destroy()
        sub.close(0)
        push.close(0)
        zctx.term()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
