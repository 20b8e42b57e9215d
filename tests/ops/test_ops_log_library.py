"""Logging as a library does it: importing adds nothing global, a plain Context prints
nothing, INFO has accept/handshake/close, DEBUG has frame summaries, lws's detail bits
(PARSER, HEADER, EXT, CLIENT, LATENCY) have lines behind them, and the apps keep their
banner and ``-d`` output.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.procs import HOST, run_server
from websockets.sync.client import connect

import lwsbridge.log as lg
from lwsbridge.context import ClientConnectInfo, Context, Protocol, Reason, WriteKind

ALL_BITS = (1 << 10) - 1

# One echo round trip served by a plain Context, in a fresh interpreter: {preamble} is
# the application's logging setup (none, basicConfig...).  It prints what importing
# left behind in logging, as JSON, on stdout.
ROUND_TRIP = textwrap.dedent(
    """
    import json, logging, threading, time
    {preamble}
    import lwsbridge, lwsbridge.adapters, lwsbridge.apps.common, lwsbridge.log
    from lwsbridge.apps.echo_server import build_context
    from websockets.sync.client import connect

    ctx = build_context(0, "127.0.0.1", 1 << 20)
    got = []

    def client():
        url = f"ws://127.0.0.1:{{ctx.port}}/echo/path"
        with connect(url, subprotocols=["lws-echo"], open_timeout=10) as ws:
            ws.send("hello")
            got.append(ws.recv(timeout=10))

    t = threading.Thread(target=client)
    t.start()
    deadline = time.monotonic() + 20
    while (t.is_alive() or ctx.connection_count) and time.monotonic() < deadline:
        ctx.service(20)
    t.join(5)
    ctx.destroy()
    loggers = [logging.getLogger()] + [
        v for v in logging.root.manager.loggerDict.values() if isinstance(v, logging.Logger)
    ]
    print(json.dumps({{
        "got": got,
        "handlers": sorted(
            f"{{lg.name}}:{{type(h).__name__}}" for lg in loggers for h in lg.handlers
        ),
        "names": [logging.getLevelName(n) for n in (5, 6, 7, 8, 9, 25)],
        "level": logging.getLogger("lwsbridge").level,
    }}))
    """
)


def round_trip(preamble: str) -> tuple[dict[str, Any], str]:
    out = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP.format(preamble=preamble)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), out.stderr


def test_plain_context_prints_nothing_and_import_adds_nothing_global() -> None:
    result, stderr = round_trip("")
    assert result["got"] == ["hello"]
    assert stderr == ""  # not even the start-up notice, nor logging's last resort
    assert result["handlers"] == ["lwsbridge:NullHandler"]
    assert result["names"] == [f"Level {n}" for n in (5, 6, 7, 8, 9, 25)]
    assert result["level"] == logging.NOTSET  # the host's root level decides


def test_basic_config_info_shows_accept_handshake_close() -> None:
    result, stderr = round_trip(
        "logging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s %(message)s')"
    )
    assert result["got"] == ["hello"]
    ours = [ln for ln in stderr.splitlines() if " lwsbridge " in ln]
    conn = r"<Connection fd=\d+ peer=\('127\.0\.0\.1', \d+\) protocol='lws-echo'>"
    expect = [
        rf"INFO lwsbridge {conn} accepted from \('127\.0\.0\.1', \d+\)$",
        rf"INFO lwsbridge {conn} handshake /echo/path subprotocol=lws-echo "
        r"extensions=permessage-deflate$",
        rf"INFO lwsbridge {conn} closed code=1000 reason='' by=peer clean=True$",
    ]
    for pattern in expect:
        assert len([ln for ln in ours if re.match(pattern, ln)]) == 1, (pattern, stderr)
    # Our NOTICE has its name on our records only (see the names check above).
    assert any(ln.startswith("NOTICE lwsbridge connection limit") for ln in ours), stderr
    assert not [ln for ln in ours if ln.startswith("DEBUG")], stderr
    assert result["handlers"] == ["lwsbridge:NullHandler", "root:StreamHandler"]


def test_basic_config_debug_shows_frame_summaries() -> None:
    result, stderr = round_trip(
        "logging.basicConfig(level=logging.DEBUG, format='%(levelname)s %(name)s %(message)s')"
    )
    assert result["got"] == ["hello"]
    ours = [ln for ln in stderr.splitlines() if " lwsbridge " in ln]
    assert len([ln for ln in ours if ln.endswith("rx TEXT len=5 fin=1")]) == 1, stderr
    assert len([ln for ln in ours if ln.endswith("tx TEXT len=5 fin=1")]) == 1, stderr


# ----------------------------------------------------------------- in this process


@pytest.fixture(autouse=True)
def import_state() -> Iterator[None]:
    lg.reset()
    yield
    lg.reset()


class Echo:
    """One protocol, both sides on one context: the server echoes; the client sends one
    message and then closes with 4000 "bye" (so the client closes locally, and the
    server sees its peer close)."""

    def __init__(self) -> None:
        self.closed = 0
        self.got: list[bytes] = []

    def callback(self, conn: Any, reason: Reason, user: Any, payload: Any) -> int:
        if reason is Reason.RECEIVE:
            self.got.append(bytes(payload))
            conn.callback_on_writable()
        elif reason is Reason.SERVER_WRITEABLE:
            conn.write(self.got[-1], WriteKind.TEXT)
        elif reason is Reason.CLIENT_ESTABLISHED:
            conn.callback_on_writable()
        elif reason is Reason.CLIENT_WRITEABLE:
            conn.write(b"hello", WriteKind.TEXT)
        elif reason is Reason.CLIENT_RECEIVE:
            conn.close_reason(4000, "bye")
            return -1
        elif reason is Reason.CLOSED:
            self.closed += 1
        return 0

    def run(self) -> None:
        ctx = Context([Protocol("lg-echo", self.callback)], port=0, interface=HOST)
        try:
            ctx.client_connect(ClientConnectInfo(HOST, ctx.port, path="/lg"))
            deadline = time.monotonic() + 20
            while self.closed < 2 and time.monotonic() < deadline:
                ctx.service(20)
        finally:
            ctx.destroy()
        assert self.closed == 2 and self.got == [b"hello"]


def test_lws_bits_bring_every_detail() -> None:
    lines: list[tuple[int, str]] = []
    lg.set_log_level(ALL_BITS, lambda level, line: lines.append((level, line)))
    Echo().run()

    def having(bit: int, pattern: str) -> list[str]:
        return [ln for b, ln in lines if b == bit and re.search(pattern, ln)]

    assert len(having(lg.LLL_INFO, r"accepted from \('127\.0\.0\.1', \d+\)$")) == 1
    # both sides: the server's has the path it was asked for, the client's the path it asked
    assert len(having(lg.LLL_INFO, r"handshake /lg subprotocol=None extensions=none$")) == 2
    assert len(having(lg.LLL_INFO, r"closed code=4000 reason='bye' by=local clean=True$")) == 1
    assert len(having(lg.LLL_INFO, r"closed code=4000 reason='bye' by=peer clean=True$")) == 1
    assert len(having(lg.LLL_DEBUG, r" tx TEXT len=5 fin=1$")) == 2  # the message and its echo
    assert len(having(lg.LLL_DEBUG, r" rx TEXT len=5 fin=1$")) == 2
    assert len(having(lg.LLL_PARSER, r" rx piece first=1 final=1 remaining=0$")) == 2
    assert having(lg.LLL_HEADER, r" header upgrade: websocket$")  # request and response
    assert having(lg.LLL_HEADER, r" header sec-websocket-key: ")
    assert having(lg.LLL_EXT, r" extensions offered: none; in use: none$")
    assert len(having(lg.LLL_CLIENT, rf" connecting to {HOST}:\d+/lg$")) == 1
    assert len(having(lg.LLL_LATENCY, r" established after \d+\.\d{3} ms$")) == 2


def test_only_the_enabled_bits_come_out() -> None:
    lines: list[tuple[int, str]] = []
    lg.set_log_level(lg.LLL_ERR | lg.LLL_PARSER, lambda level, line: lines.append((level, line)))
    Echo().run()
    assert {b for b, _ in lines} == {lg.LLL_PARSER}
    assert len(lines) == 2


@pytest.mark.parametrize(
    "levels", [None, lg.LLL_ERR | lg.LLL_WARN | lg.LLL_NOTICE, lg.LLL_ERR | lg.LLL_INFO]
)
def test_frame_logging_is_skipped_when_off(monkeypatch: pytest.MonkeyPatch, levels: Any) -> None:
    """With DEBUG and PARSER off, the frame helpers are never entered (one flag test)."""

    def boom(*_: object) -> None:
        raise AssertionError("frame logging ran while off")

    if levels is not None:
        lg.set_log_level(levels, lambda level, line: None)
    for name in ("rx_piece", "tx_frame", "frame_summary", "piece_detail"):
        monkeypatch.setattr(lg, name, boom)
    Echo().run()
    assert lg.frames is False


def test_frames_flag_follows_levels() -> None:
    assert lg.frames is False  # no configuration: the root logger's WARNING
    lg.set_log_level(lg.LLL_PARSER)
    assert lg.frames is True
    lg.set_log_level(lg.LLL_ERR | lg.LLL_INFO)
    assert lg.frames is False
    lg.reset()
    lg.logger.setLevel(logging.DEBUG)  # the host, through logging
    assert lg.frames is False  # applies from the next handshake, or now with refresh()
    assert lg.refresh() is True and lg.frames is True
    lg.logger.setLevel(logging.NOTSET)
    Echo().run()  # a handshake recomputes it
    assert lg.frames is False


def test_host_logging_level_reaches_frames_at_the_next_handshake(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="lwsbridge")
    Echo().run()
    msgs = [r.getMessage() for r in caplog.records if r.name == "lwsbridge"]
    assert len([m for m in msgs if m.endswith("rx TEXT len=5 fin=1")]) == 2, msgs
    assert [r.levelname for r in caplog.records if r.levelno == lg.NOTICE][:1] == ["NOTICE"]


# ------------------------------------------------------------------------- the apps

LWS_LINE = re.compile(r"^\[\d{4}/\d\d/\d\d \d\d:\d\d:\d\d:\d{4}\] ([A-Z]): (.*)$")


def app_lines(tmp_path: Path, *extra: str, wait_for: str = "") -> list[tuple[str, str]]:
    """One echo round trip against the echo app; its log as (letter, text) lws lines."""
    with run_server("lwsbridge-test-echo", tmp_path, *extra) as srv:
        with connect(srv.ws_url, open_timeout=10) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "hello"
        # the server logs the close after it has seen it: wait for that line (bounded)
        deadline = time.monotonic() + 10
        while wait_for not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = srv.log()
    out = []
    for line in log.splitlines():
        m = LWS_LINE.match(line)
        assert m, f"not an lws line: {line!r}"
        out.append((m.group(1), m.group(2)))
    return out


def test_echo_app_prints_its_banner_and_nothing_more_by_default(tmp_path: Path) -> None:
    lines = app_lines(tmp_path)
    assert {letter for letter, _ in lines} == {"N"}
    assert any(" on port " in text for _, text in lines)


def test_echo_app_debug_bits(tmp_path: Path) -> None:
    bits = lg.LLL_ERR | lg.LLL_WARN | lg.LLL_NOTICE | lg.LLL_INFO | lg.LLL_DEBUG | lg.LLL_PARSER
    lines = app_lines(tmp_path, "-d", str(bits), wait_for=" closed code=")

    def having(letter: str, pattern: str) -> list[str]:
        return [t for x, t in lines if x == letter and re.search(pattern, t)]

    assert having("N", " on port ")
    # (the readiness probe of run_server is one more accepted connection)
    assert having("I", r" accepted from \('127\.0\.0\.1', \d+\)$"), lines
    assert len(having("I", r" handshake / subprotocol=None extensions=permessage-deflate")) == 1
    assert len(having("I", r" closed code=1000 reason='' by=peer clean=True$")) == 1, lines
    assert len(having("D", r" rx TEXT len=5 fin=1$")) == 1, lines
    assert len(having("D", r" tx TEXT len=5 fin=1$")) == 1, lines
    assert len(having("P", r" rx piece first=1 final=1 remaining=0$")) == 1, lines
