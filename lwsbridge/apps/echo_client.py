"""The client side of lwsbridge-test-echo: check an echo server, or be an Autobahn testee."""

from __future__ import annotations

import sys
import time
import urllib.parse
from typing import Any

from lwsbridge.apps.echo_protocol import EchoSession, echo_callback
from lwsbridge.context import ClientConnectInfo, Connection, Context, Protocol, Reason, WriteKind

__all__ = ["autobahn", "check_echo", "parse_ws_url"]


def parse_ws_url(url: str) -> tuple[str, int, str, bool]:
    """``ws[s]://host[:port]/path?query`` -> (host, port, path with query, tls)."""
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("ws", "wss") or not u.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {url!r}")
    tls = u.scheme == "wss"
    try:
        port = u.port or (443 if tls else 80)
    except ValueError as exc:  # "Port out of range 0-65535": which URL?
        raise ValueError(f"bad port in URL {url!r}: {exc}") from None
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")
    return u.hostname, port, path, tls


def _run(ctx: Context, until: Any, deadline: float, loop: str | None = None) -> bool:
    """Service ``ctx`` until ``until()``; False at ``deadline``.  ``loop``: an adapter."""
    if loop is not None:
        from lwsbridge.adapters import run as run_on
        from lwsbridge.apps.common import StopEvent

        run_on(ctx, loop, StopEvent(lambda: until() or time.monotonic() > deadline))
        return bool(until())
    while not until():
        if time.monotonic() > deadline:
            return False
        ctx.service(100)
    return True


def check_echo(
    url: str, sizes: list[int], max_size: int = 64 << 20, loop: str | None = None
) -> int:
    """Send text and binary messages of each size; 0 if every echo matched."""
    host, port, path, tls = parse_ws_url(url)
    todo: list[tuple[bytes, bool]] = []
    for n in sizes:
        text = ("ab€" * (n // 5 + 1)).encode("utf-8")[:n]
        # Cut on a character boundary: a text message must stay valid UTF-8.
        text = text.decode("utf-8", "ignore").encode("utf-8")
        todo += [(text, False), (bytes(i & 0xFF for i in range(n)), True)]
    state: dict[str, Any] = {"sent": 0, "ok": 0, "bad": [], "error": None, "closed": False}
    parts: list[bytes] = []

    def cb(conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        if conn is None:
            return 0
        if reason is Reason.CLIENT_ESTABLISHED:
            conn.callback_on_writable()
        elif reason is Reason.CLIENT_WRITEABLE and state["sent"] < len(todo):
            data, binary = todo[state["sent"]]
            conn.write(data, WriteKind.BINARY if binary else WriteKind.TEXT)
            state["sent"] += 1
        elif reason is Reason.CLIENT_RECEIVE:
            parts.append(payload)
            if not conn.is_final_fragment():
                return 0
            got = b"".join(parts)
            parts.clear()
            i = state["ok"] + len(state["bad"])
            data, binary = todo[i]
            if got == data and conn.frame_is_binary() == binary:
                state["ok"] += 1
            else:
                state["bad"].append((len(data), binary, len(got)))
            if i + 1 < len(todo):
                conn.callback_on_writable()
            else:
                conn.close_reason(1000, "done")
                return -1
        elif reason is Reason.CLIENT_CONNECTION_ERROR:
            state["error"] = payload
        elif reason is Reason.CLOSED:
            state["closed"] = True
        return 0

    ctx = Context([Protocol("echo-client", cb)], port=None, max_message_size=max_size)
    try:
        ctx.client_connect(ClientConnectInfo(host, port, path, ssl=tls))
        finished = _run(ctx, lambda: state["closed"] or state["error"], time.monotonic() + 60, loop)
    finally:
        ctx.destroy()
    for n, binary, got in state["bad"]:
        kind = "binary" if binary else "text"
        print(f"echo mismatch: {kind} of {n} bytes came back as {got} bytes", file=sys.stderr)
    if state["error"]:
        print(f"connection error: {state['error']}", file=sys.stderr)
        return 1
    print(f"{state['ok']} of {len(todo)} echoes matched", file=sys.stderr)
    return 0 if finished and state["ok"] == len(todo) else 1


def autobahn(url: str, agent: str, max_size: int = 64 << 20, loop: str | None = None) -> int:
    """The Autobahn|Testsuite testee client: getCaseCount, runCase each, updateReports."""
    base = url.rstrip("/")
    host, port, _path, tls = parse_ws_url(base)
    prefix = urllib.parse.urlsplit(base).path
    count: list[int] = []
    done: list[bool] = []

    def counter(conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        if reason is Reason.CLIENT_RECEIVE:
            count.append(int(bytes(payload)))
        elif reason in (Reason.CLOSED, Reason.CLIENT_CONNECTION_ERROR):
            done.append(True)
        return 0

    def echo(conn: Connection | None, reason: Reason, user: Any, payload: Any) -> int:
        if reason in (Reason.CLOSED, Reason.CLIENT_CONNECTION_ERROR):
            done.append(True)
            return 0
        return echo_callback(conn, reason, user, payload)

    ctx = Context(
        [Protocol("count", counter), Protocol("echo", echo, EchoSession, deflate=True)],
        port=None,
        max_message_size=max_size,
    )

    def one(path: str, protocol: str, limit: float) -> bool:
        done.clear()
        ctx.client_connect(
            ClientConnectInfo(
                host, port, f"{prefix}{path}", ssl=tls, protocol=protocol, subprotocols=()
            )
        )
        return _run(ctx, lambda: bool(done), time.monotonic() + limit, loop)

    try:
        one("/getCaseCount", "count", 30)
        if not count:
            print("autobahn: no case count received", file=sys.stderr)
            return 1
        agent_q = urllib.parse.quote(agent)
        for i in range(1, count[0] + 1):
            if not one(f"/runCase?case={i}&agent={agent_q}", "echo", 120):
                print(f"autobahn: case {i} did not finish", file=sys.stderr)
        one(f"/updateReports?agent={agent_q}", "count", 60)
    finally:
        ctx.destroy()
    print(f"autobahn: ran {count[0]} cases as {agent}", file=sys.stderr)
    return 0
