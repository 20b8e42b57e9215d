"""The test apps end with exit 0 on SIGTERM even when it comes the moment the port opens."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest
from support.procs import free_port as _free_port


@pytest.mark.parametrize("app", ["demo_server", "echo_server"])
@pytest.mark.parametrize("loop", [None, "asyncio"])
def test_sigterm_as_soon_as_the_port_accepts(app: str, loop: str | None) -> None:
    port = _free_port()
    cmd = [sys.executable, "-m", f"lwsbridge.apps.{app}", "-p", str(port), "-i", "127.0.0.1"]
    if loop:
        cmd += ["--loop", loop]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.002)
        else:
            pytest.fail("the app never listened")
        proc.send_signal(signal.SIGTERM)  # the earliest moment a supervisor could
        _out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err.decode(errors="replace")
        assert b"Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_stop_before_serve_is_not_lost() -> None:
    """SIGTERM between catch_stop_signals() and serve() (the context is being built)."""
    import os

    from lwsbridge.apps import common, echo_server

    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        common.catch_stop_signals()
        os.kill(os.getpid(), signal.SIGTERM)  # handled at once: sets the early flag
        ctx = echo_server.build_context(0, "127.0.0.1", 1 << 20)
        t0 = time.monotonic()
        common.serve(ctx, None, poll_ms=5000)  # returns at once instead of serving
        assert time.monotonic() - t0 < 1.0
        ctx.destroy()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
