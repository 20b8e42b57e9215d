"""libwebsockets' own C test client (Debian 4.1.x) against lwsbridge-test-server.

``libwebsockets-test-client HOST --port P`` opens two connections: one on
``dumb-increment-protocol`` (logs ``rx LEN 'NUMBER'`` for every number at info level) and
one on ``lws-mirror-protocol`` (floods ``c #RRGGBB x y r;`` circles).  It runs until
killed, so it is stopped by PID after a fixed time.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support.procs import stop_process
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

pytestmark = pytest.mark.peers

RUN_SECONDS = 3.0
RX_LINE = re.compile(r"\] I: rx (\d+) '([^']*)'")
MIRROR_MSG = re.compile(r"(?:c #[0-9A-Fa-f]{6} \d+ \d+ \d+;)+")


class MirrorObserver(threading.Thread):
    """A websockets sync client on lws-mirror-protocol, collecting what the mirror relays."""

    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seconds = seconds
        self.messages: list[str | bytes] = []
        self.close: tuple[Any, Any] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with connect(
                self.url, subprotocols=["lws-mirror-protocol"], open_timeout=5, close_timeout=2
            ) as ws:
                assert ws.subprotocol == "lws-mirror-protocol"
                deadline = time.monotonic() + self.seconds
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        self.messages.append(ws.recv(timeout=left))
                    except TimeoutError:
                        break
                    except ConnectionClosed as exc:
                        self.close = (exc.rcvd.code if exc.rcvd else None, exc.rcvd)
                        break
        except BaseException as exc:
            self.error = exc


def test_lws_test_client_dumb_increment_and_mirror(
    lws_test_client: str, test_server: Any, tmp_path: Path
) -> None:
    log_path = tmp_path / "libwebsockets-test-client.log"
    with open(log_path, "wb") as log:
        client = subprocess.Popen(
            [lws_test_client, "127.0.0.1", "--port", str(test_server.port), "-d", "15"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    observer = MirrorObserver(test_server.ws_url, RUN_SECONDS - 0.5)
    try:
        time.sleep(0.3)  # let the C client open its mirror connection first
        observer.start()
        time.sleep(RUN_SECONDS - 0.3)
        assert client.poll() is None, "libwebsockets-test-client exited early"
    finally:
        stop_process(client)
        observer.join(timeout=10)
    test_server.assert_alive()

    text = log_path.read_text(errors="replace")
    rx = [(int(n), k) for n, k in RX_LINE.findall(text)]
    numbers = [int(k) for _, k in rx]
    context = f"client log tail:\n{text[-2000:]}\nserver log:\n{test_server.log()[-2000:]}"
    assert len(numbers) >= 20, f"only {len(numbers)} numbers received\n{context}"
    assert numbers == list(range(len(numbers))), f"not consecutive from 0: {numbers[:50]}"
    assert all(n == len(k) for n, k in rx), "logged rx length differs from the payload"
    assert "mirror: LWS_CALLBACK_CLIENT_ESTABLISHED" in text, context

    assert not observer.is_alive(), "mirror observer did not finish"
    assert observer.error is None, f"mirror observer failed: {observer.error!r}"
    msgs = observer.messages
    assert len(msgs) >= 10, (
        f"observer got {len(msgs)} mirror messages (close {observer.close})\n{context}"
    )
    bad = [m for m in msgs if not (isinstance(m, str) and MIRROR_MSG.fullmatch(m))]
    assert not bad, f"{len(bad)} unexpected mirror messages, e.g. {bad[:3]!r}"
