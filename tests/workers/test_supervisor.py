"""lwsbridge.workers.run as an API: crash-loop backoff, a worker that will not drain, n = 1,
the error without SO_REUSEPORT balancing, and the worker tag on log lines."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.procs import HOST, free_port, stop_process, wait_accepting
from websockets.sync.client import connect
from workerkit import WAIT, WorkerApp, alive

from lwsbridge import log as lwslog
from lwsbridge import workers
from lwsbridge.apps import echo_server
from lwsbridge.context import Context, Protocol

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing is Linux only"
)

APP = """
import os, sys, time
from lwsbridge import workers
from lwsbridge.context import Context, Protocol, Reason
from lwsbridge.log import LLL_ERR, LLL_NOTICE, LLL_WARN, set_log_level

set_log_level(LLL_ERR | LLL_WARN | LLL_NOTICE)  # a library logs nothing unless asked

port, n, marker, drain = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4])

def callback(conn, reason, user, payload):
    if reason is Reason.RECEIVE and payload == b"hang":
        time.sleep(60)  # stuck in a callback: this worker cannot drain
    return 0

def build():
    if os.path.exists(marker):
        raise RuntimeError("this worker fails at start")
    return Context([Protocol("p", callback)], port=port, interface="127.0.0.1", reuse_port=True)

sys.exit(workers.run(build, n, drain_timeout=drain))
"""


def _start(tmp_path: Path, n: int, drain: float, port: int | None = None) -> tuple[WorkerApp, Path]:
    script = tmp_path / "app.py"
    script.write_text(APP)
    marker = tmp_path / "fail-now"
    port = free_port() if port is None else port
    log_path = tmp_path / "app.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(port), str(n), str(marker), str(drain)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return WorkerApp(proc, port, log_path), marker


@linux_only
def test_a_crash_loop_backs_off(tmp_path: Path) -> None:
    wa, marker = _start(tmp_path, 2, 1.0)
    try:
        wa.wait_log(lambda t: "supervisor: 2 workers up" in t, "two workers up")
        first = wa.current()
        marker.touch()  # from now on every new worker dies at start
        os.kill(first[1], signal.SIGKILL)
        delays = re.compile(
            r"worker 1 \(pid \d+\) (?:was killed|exited)[^;]*; restarting it in ([\d.]+) s"
        )
        wa.wait_log(lambda t: len(delays.findall(t)) >= 4, "four restarts of worker 1")
        seen = [float(d) for d in delays.findall(wa.log())]
        assert seen[:4] == [0.1, 0.2, 0.4, 0.8]  # doubling, not spinning
        assert "this worker fails at start" in wa.log()
        assert alive(first[2])  # the other worker is untouched
        wa.signal(signal.SIGTERM)
        assert wa.wait_exit() == 0
        assert not alive(first[2])
    finally:
        stop_process(wa.proc, grace=WAIT)


@linux_only
def test_a_worker_that_does_not_drain_is_killed(tmp_path: Path) -> None:
    wa, _marker = _start(tmp_path, 2, 0.5)
    try:
        wa.wait_log(lambda t: "supervisor: 2 workers up" in t, "two workers up")
        pids = list(wa.current().values())
        with connect(f"ws://{HOST}:{wa.port}/", subprotocols=["p"]) as ws:  # type: ignore[list-item]
            ws.send(b"hang")
            wa.signal(signal.SIGTERM)
            assert wa.wait_exit() == 0
        assert "did not drain in time: killed" in wa.log()
        assert all(not alive(pid) for pid in pids)
    finally:
        stop_process(wa.proc, grace=WAIT)


def test_one_worker_is_one_process(tmp_path: Path) -> None:
    wa, _marker = _start(tmp_path, 1, 1.0)
    try:
        assert wait_accepting(wa.proc, wa.port, time.monotonic() + WAIT), wa.log()
        with connect(f"ws://{HOST}:{wa.port}/", subprotocols=["p"], open_timeout=WAIT):  # type: ignore[list-item]
            pass
        wa.signal(signal.SIGTERM)
        assert wa.wait_exit() == 0
        assert "supervisor" not in wa.log() and "[w" not in wa.log()
    finally:
        stop_process(wa.proc, grace=WAIT)


@linux_only
def test_workers_that_cannot_start_give_one_clear_line(tmp_path: Path) -> None:
    taken = socket.socket()
    try:
        taken.bind((HOST, 0))  # no SO_REUSEPORT: the workers cannot join it
        taken.listen()
        port = taken.getsockname()[1]
        cmd = [sys.executable, "-m", "lwsbridge.apps.echo_server", "-i", HOST, "--workers", "2"]
        for args, why in (
            (["-p", str(port)], "Address already in use"),
            (["-p", "0"], "--workers needs a fixed port, not 0"),
        ):
            r = subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=WAIT)
            assert r.returncode == 1, r.stderr
            assert "Traceback" not in r.stderr, r.stderr
            last = r.stderr.strip().splitlines()[-1]
            assert last.startswith("lwsbridge-test-echo: ") and why in last, r.stderr
    finally:
        taken.close()
    # through the API, port 0 gives each worker a port of its own: refused too
    wa, _marker = _start(tmp_path, 2, 1.0, port=0)
    try:
        assert wa.proc.wait(timeout=WAIT) == 1, wa.log()
        assert "the workers listen on different ports" in wa.log(), wa.log()
    finally:
        stop_process(wa.proc, grace=WAIT)


def test_without_reuseport_balancing_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(ValueError, match="only Linux"):
        workers.run(lambda: Context([Protocol("p", lambda *a: 0)], port=None), 2)
    with pytest.raises(ValueError, match="needs Linux"):
        Context([Protocol("p", lambda *a: 0)], port=0, interface=HOST, reuse_port=True)
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with pytest.raises(SystemExit) as info:
            echo_server.main(["-p", str(free_port()), "-i", HOST, "--workers", "2"])
        assert info.value.code == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("lwsbridge-test-echo: --workers needs SO_REUSEPORT")
        with pytest.raises(SystemExit) as info:
            echo_server.main(["-p", "0", "--workers", "0"])
        assert info.value.code == 2
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def test_log_lines_carry_the_worker_tag() -> None:
    lines: list[str] = []
    old_emit, old_levels = lwslog.get_emitter(), lwslog.get_log_level()
    lwslog.set_log_level(old_levels, lambda level, line: lines.append(line))
    try:
        lwslog.set_log_tag("w3")
        assert lwslog.get_log_tag() == "w3"
        lwslog.lwsl_notice("accepted %d", 1)
        record = logging.LogRecord("lwsbridge", logging.WARNING, __file__, 1, "hi", None, None)
        formatted = lwslog.LwsFormatter().format(record)
        lwslog.set_log_tag(None)
        lwslog.lwsl_notice("untagged")
    finally:
        lwslog.set_log_tag(None)
        if old_emit is None:
            lwslog.use_logging_only()
        else:
            lwslog.set_log_level(old_levels, old_emit)
    assert lines == ["[w3] accepted 1", "untagged"]
    assert formatted.endswith("W: [w3] hi")


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_run_refuses_a_negative_drain_timeout(bad: float) -> None:
    # Refused before anything starts: no fork, no context built.
    def build() -> Context:
        raise AssertionError("built a context for a refused drain_timeout")

    with pytest.raises(ValueError, match="drain_timeout must be 0 or more seconds"):
        workers.run(build, 1, drain_timeout=bad)
    with pytest.raises(ValueError, match="drain_timeout must be 0 or more seconds"):
        workers.run(build, 2, drain_timeout=bad)
