"""Every Python code block in README.md runs here, so the examples cannot go stale.

Blocks are taken from the file as it is.  A server block ends in ``while True:`` around
``ctx.service(...)``: it runs on a thread with the port made free (``port=0``) and the
loop made stoppable, while a real client (websockets) talks to it.  Other blocks run
as they are, with the names they leave to the reader (``bytes_from_socket``) given.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lwsbridge.log import LLL_ERR, LLL_NOTICE, LLL_WARN, set_log_level

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def python_blocks(path: Path) -> list[str]:
    return FENCE.findall(path.read_text(encoding="utf-8"))


README_BLOCKS = python_blocks(ROOT / "README.md")


def test_readme_has_the_blocks_this_file_runs() -> None:
    kinds = [classify(b) for b in README_BLOCKS]
    assert "server" in kinds and "core" in kinds, kinds
    assert len(README_BLOCKS) == len(kinds)


def classify(block: str) -> str:
    if "while True:" in block and "ctx.service(" in block:
        return "server"
    if "bytes_from_socket" in block:
        return "core"
    return "plain"


def run_server_block(block: str) -> tuple[dict[str, Any], threading.Event, threading.Thread]:
    code = re.sub(r"port=\d+", "port=0, interface='127.0.0.1'", block)
    code = code.replace("while True:", "while not _STOP.is_set():")
    stop = threading.Event()
    ns: dict[str, Any] = {"_STOP": stop, "__name__": "readme_example"}
    errors: list[BaseException] = []

    def body() -> None:
        try:
            exec(compile(code, "README.md", "exec"), ns)
        except BaseException as exc:  # handed to the test
            errors.append(exc)
        finally:
            if "ctx" in ns:
                ns["ctx"].destroy()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while getattr(ns.get("ctx"), "port", None) is None and time.monotonic() < deadline:
        assert not errors, errors
        time.sleep(0.01)
    assert ns.get("ctx") is not None, errors
    ns["_errors"] = errors
    return ns, stop, t


@pytest.mark.parametrize(
    "index", [i for i, b in enumerate(README_BLOCKS) if classify(b) == "server"]
)
def test_readme_server_echoes_whole_messages(index: int) -> None:
    from websockets.sync.client import connect

    ns, stop, t = run_server_block(README_BLOCKS[index])
    try:
        url = f"ws://127.0.0.1:{ns['ctx'].port}/"
        big_text = "é" * 150_000  # 300 kB of UTF-8, arrives in pieces
        big_binary = os.urandom(1_000_000)
        with connect(url, subprotocols=["echo"], max_size=None, compression=None) as ws:
            for msg in ("hello", b"\x00\x01binary", big_text, big_binary, [b"frag", b"ments"]):
                ws.send(msg)
                want = b"".join(msg) if isinstance(msg, list) else msg
                got = ws.recv(timeout=10)
                assert type(got) is type(want), "the opcode is kept"
                assert got == want, len(got)
    finally:
        stop.set()
        t.join(5)
    assert not ns["_errors"], ns["_errors"]


def test_readme_core_block_runs_on_a_real_request() -> None:
    request = (
        b"GET /chat HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    blocks = [b for b in README_BLOCKS if classify(b) == "core"]
    assert blocks
    for block in blocks:
        ns: dict[str, Any] = {"bytes_from_socket": request}
        exec(compile(block, "README.md", "exec"), ns)
        # the block accepted the upgrade: the 101 was queued for the socket
        assert ns["conn"].state.name == "OPEN"


def test_readme_plain_blocks_run() -> None:
    plain = [b for b in README_BLOCKS if classify(b) == "plain"]
    log = logging.getLogger("lwsbridge")
    level, handlers = log.level, list(log.handlers)
    try:
        for block in plain:
            exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})
    finally:
        set_log_level(LLL_ERR | LLL_WARN | LLL_NOTICE)
        log.setLevel(level)
        log.handlers[:] = handlers
