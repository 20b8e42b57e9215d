"""One side of a numbered exchange, run as a script inside a network namespace.

    python nspeer.py server ADDR PORT [--ka T,I,P] [--ping I,T]
    python nspeer.py client ADDR PORT [--ka ...] [--ping ...] --conn LABEL:PLAN[:after=LABEL] ...

Each connection follows a *plan*: ``seq`` (200 numbered messages of varied sizes, some
larger than the MTU, text and binary), ``big`` (one 600 kB message), ``idle`` (nothing).
A client connection sends its plan from CLIENT_ESTABLISHED (or, with ``after=X``, once
connection X has ended); the server learns the plan and label from the request headers
and sends its own copy from the first message it receives.  Every received message is
checked: its number is the next one expected, its kind, length and bytes are right.
The client closes cleanly (1000) once it has sent and received its whole plan.

The script speaks JSON lines on stdout: ``ready``; ``established`` and ``end`` per
connection (``end`` carries the counts and the monotonic time); ``pong``; and, after
``quit`` on stdin (or its own deadline), ``summary`` with every end callback per
connection, so that a second CLOSED would show.  An exception escaping the context is
printed as ``exception`` and the script exits 1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import select
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from lwsbridge.apps.common import setup_logging
from lwsbridge.context import ClientConnectInfo, Connection, Context, Protocol, Reason, WriteKind

SEQ_SIZES = (8, 125, 126, 1399, 1500, 3000, 9000, 16000, 127, 65536)
PLANS: dict[str, list[int]] = {
    "seq": [70000 if i % 50 == 49 else SEQ_SIZES[i % len(SEQ_SIZES)] for i in range(200)],
    "big": [600_000],
    "idle": [],
}
ENDS = (Reason.CLOSED, Reason.CLIENT_CONNECTION_ERROR)
LIFETIME = 60.0  # the script's own bound, should the test never say quit


def message(i: int, size: int) -> bytes:
    """Message ``i``: its number in 8 digits, then ASCII bytes derived from ``i``."""
    unit = hashlib.sha256(b"%d" % i).hexdigest().encode()
    body = unit * (size // len(unit) + 1)
    return (b"%08d" % i + body)[:size]


def is_binary(i: int) -> bool:
    return i % 3 == 0


@dataclass
class Exchange:
    label: str
    plan: list[int]
    after: str | None = None
    sent: int = 0
    received: int = 0
    started: bool = False
    bad: list[str] = field(default_factory=list)
    ends: list[str] = field(default_factory=list)
    pongs: int = 0
    closing: bool = False
    buf: bytearray = field(default_factory=bytearray)

    def check(self, data: bytes, binary: bool) -> None:
        i = self.received
        if i >= len(self.plan):
            self.bad.append(f"message beyond the plan ({len(self.plan)})")
        elif data != message(i, self.plan[i]):
            self.bad.append(f"message {i}: got {len(data)} bytes starting {data[:8]!r}")
        elif binary != is_binary(i):
            self.bad.append(f"message {i}: binary={binary}")
        self.received += 1

    def done(self) -> bool:
        return self.sent == len(self.plan) and self.received == len(self.plan)

    def report(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "sent": self.sent,
            "received": self.received,
            "expected": len(self.plan),
            "bad": self.bad[:5],
            "ends": self.ends,
            "pongs": self.pongs,
        }


def say(ev: str, **kw: Any) -> None:
    print(json.dumps({"ev": ev, "t": time.monotonic(), **kw}), flush=True)


class Peer:
    def __init__(self, role: str, conns: list[tuple[str, str, str | None]]) -> None:
        self.role = role
        self.by_conn: dict[int, Exchange] = {}
        self.pending = {label: Exchange(label, PLANS[plan], after) for label, plan, after in conns}
        self.all: list[Exchange] = list(self.pending.values())
        self.conns: dict[str, Connection] = {}

    def callback(self, conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        try:
            return self._callback(conn, reason, payload)
        except Exception:  # a bug here must show, not turn into a quiet close
            say("exception", where="callback", tb=traceback.format_exc())
            return -1

    def _callback(self, conn: Connection | None, reason: Reason, payload: Any) -> int:
        if conn is None:
            return 0
        if reason is Reason.CLIENT_APPEND_HANDSHAKE_HEADER:
            return 0
        if reason is Reason.ESTABLISHED:  # server: the plan comes in the request headers
            label, plan = conn.header("x-label") or "?", conn.header("x-plan") or "idle"
            new = Exchange(label, PLANS[plan])
            self.all.append(new)
            self.by_conn[id(conn)] = new
            say("established", label=label)
            return 0
        ex = self.by_conn.get(id(conn))
        if ex is None:
            return 0
        if reason is Reason.CLIENT_ESTABLISHED:
            say("established", label=ex.label)
            if ex.after is None or any(o.label == ex.after and o.ends for o in self.all):
                self.start(conn, ex)
        elif reason in (Reason.RECEIVE, Reason.CLIENT_RECEIVE):
            ex.buf += payload
            if conn.is_final_fragment():
                ex.check(bytes(ex.buf), conn.frame_is_binary())
                ex.buf.clear()
                if not ex.started:  # the server answers from the first message on
                    self.start(conn, ex)
                elif ex.done() and self.role == "client":
                    conn.callback_on_writable()
        elif reason in (Reason.SERVER_WRITEABLE, Reason.CLIENT_WRITEABLE):
            return self.writeable(conn, ex)
        elif reason in (Reason.RECEIVE_PONG, Reason.CLIENT_RECEIVE_PONG):
            ex.pongs += 1
            say("pong", label=ex.label, pongs=ex.pongs)
        elif reason in ENDS:
            ex.ends.append(reason.name)
            say("end", reason=reason.name, **ex.report())
            for other in self.all:  # connections that wait for this one to end
                if other.after == ex.label and not other.started:
                    c = self.conns.get(other.label)
                    if c is not None and c.established:
                        self.start(c, other)
        return 0

    def start(self, conn: Connection, ex: Exchange) -> None:
        ex.started = True
        conn.callback_on_writable()

    def writeable(self, conn: Connection, ex: Exchange) -> int:
        if ex.sent < len(ex.plan):
            i = ex.sent
            kind = WriteKind.BINARY if is_binary(i) else WriteKind.TEXT
            conn.write(message(i, ex.plan[i]), kind)
            ex.sent += 1
            conn.callback_on_writable()
            return 0
        if self.role == "client" and ex.plan and ex.done() and not ex.closing:
            ex.closing = True
            conn.close_reason(1000, "done")
            return -1  # the clean close, after everything in the plan went both ways
        return 0


def triple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=("server", "client"))
    ap.add_argument("addr")
    ap.add_argument("port", type=int)
    ap.add_argument("--ka", type=triple, default=(0, 0, 0), help="ka_time,ka_interval,ka_probes")
    ap.add_argument("--ping", type=triple, default=None, help="ping_interval,pong_timeout")
    ap.add_argument("--conn", action="append", default=[], help="LABEL:PLAN[:after=LABEL]")
    args = ap.parse_args()
    setup_logging(1 | 2 | 4)  # errors, warnings, notices on stderr

    conns = []
    for spec in args.conn:
        label, plan, *rest = spec.split(":")
        after = rest[0].removeprefix("after=") if rest else None
        conns.append((label, plan, after))
    peer = Peer(args.role, conns)
    kw: dict[str, Any] = {"ka_time": args.ka[0], "ka_interval": args.ka[1], "ka_probes": args.ka[2]}
    if args.ping is not None:
        kw.update(ping_interval=args.ping[0], pong_timeout=args.ping[1])
    if args.role == "server":
        ctx = Context([Protocol("nf", peer.callback)], port=args.port, interface=args.addr, **kw)
    else:
        ctx = Context([Protocol("nf", peer.callback)], port=None, **kw)
        for ex in peer.all:
            info = ClientConnectInfo(
                args.addr,
                args.port,
                protocol="nf",
                headers=[("X-Label", ex.label), ("X-Plan", plan_name(ex.plan))],
                timeout=10,
            )
            conn = ctx.client_connect(info)
            peer.by_conn[id(conn)] = ex
            peer.conns[ex.label] = conn
    say("ready", role=args.role)

    end = time.monotonic() + LIFETIME
    stdin = sys.stdin.fileno()
    status = 0
    while time.monotonic() < end:
        try:
            ctx.service(20)
        except Exception:
            say("exception", where="service", tb=traceback.format_exc())
            status = 1
            break
        if select.select([stdin], [], [], 0)[0]:
            cmd = os.read(stdin, 100)
            if cmd in (b"", b"quit\n"):
                break
    say("summary", conns=[ex.report() for ex in peer.all])
    ctx.destroy()
    return status


def plan_name(plan: list[int]) -> str:
    return next(name for name, sizes in PLANS.items() if sizes == plan)


if __name__ == "__main__":
    sys.exit(main())
