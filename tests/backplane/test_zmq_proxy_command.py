"""lwsbridge-zmq-proxy: clean exit on SIGTERM/SIGINT, one-line errors for bad binds."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from support.procs import HOST, stop_process
from support.zmqproxy import ZmqProxy, proxy_command, zmq_proxy

pytest.importorskip("zmq")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_it_with_exit_0(tmp_path: Path, sig: signal.Signals) -> None:
    with zmq_proxy(tmp_path) as p:
        p.proc.send_signal(sig)
        assert p.proc.wait(timeout=10) == 0
        assert "Traceback" not in p.log()


def run_proxy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*proxy_command(), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_port_in_use_is_one_line(proxy: ZmqProxy) -> None:
    r = run_proxy("--bind", f"{HOST}:{proxy.port}")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("lwsbridge-zmq-proxy: cannot bind tcp://")
    assert f":{proxy.port}" in lines[0]
    assert "in use" in lines[0].lower()


@pytest.mark.parametrize("bind", ["nonsense", "127.0.0.1:0", "127.0.0.1:65535", "256.1.1.1:7000"])
def test_bad_address_is_one_line(bind: str) -> None:
    r = run_proxy("--bind", bind)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("lwsbridge-zmq-proxy: ")
    assert bind in lines[0]


def test_the_proxy_is_stopped_by_pid(tmp_path: Path) -> None:
    # The fixture's own promise: after the block the process is gone.
    with zmq_proxy(tmp_path) as p:
        proc = p.proc
    assert proc.poll() is not None
    stop_process(proc)  # and stopping again is harmless


def test_bad_hwm_is_one_line() -> None:
    r = run_proxy("--bind", f"{HOST}:7000", "--hwm", "0")  # refused before any bind
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["lwsbridge-zmq-proxy: bad --hwm 0: must be at least 1"]
