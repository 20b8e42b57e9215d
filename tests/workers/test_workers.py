"""``--workers 2``: real processes on one SO_REUSEPORT port, real sockets, stopped by PID."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from workerkit import WAIT, WorkerApp, alive, echo, open_ws, owner_pid, worker_app

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing is Linux only"
)

MAX_TRIES = 40  # connections opened while looking for one on a given worker


def _one_on_each(wa: WorkerApp, stack: contextlib.ExitStack) -> dict[int, ClientConnection]:
    """Open clients until each current worker holds one: pid -> that client."""
    pids = list(wa.current().values())
    found: dict[int, ClientConnection] = {}
    for i in range(MAX_TRIES):
        ws = stack.enter_context(open_ws(wa.url))
        echo(ws, f"hello {i}")
        pid = owner_pid(ws, wa.port, pids)
        assert pid is not None, "no worker holds the connection"
        found.setdefault(pid, ws)
        if len(found) == len(pids):
            return found
    pytest.fail(f"{MAX_TRIES} connections all went to {list(found)} of workers {pids}")


def _expect_going_away(ws: ClientConnection) -> None:
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=WAIT)
    assert info.value.rcvd is not None, "closed without a close frame"
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (1001, "going away")


@pytest.mark.parametrize("loop", [None, "asyncio"])
def test_two_workers_serve_and_sigterm_drains(tmp_path: Path, loop: str | None) -> None:
    extra = ["--loop", loop] if loop else []
    with worker_app(tmp_path, *extra) as wa, contextlib.ExitStack() as stack:
        workers = wa.current()
        assert sorted(workers) == [1, 2]
        clients = _one_on_each(wa, stack)  # both processes accept
        log = wa.log()
        assert "[w1] " in log and "[w2] " in log
        wa.signal(signal.SIGTERM)
        for ws in clients.values():
            _expect_going_away(ws)
        assert wa.wait_exit() == 0
        log = wa.log()
        assert "Traceback" not in log
        assert all(not alive(pid) for pid in workers.values())


def test_kill9_worker_is_restarted_others_see_no_gap(tmp_path: Path) -> None:
    with worker_app(tmp_path) as wa, contextlib.ExitStack() as stack:
        before = wa.current()
        clients = _one_on_each(wa, stack)
        victim_index, victim = next(iter(before.items()))
        survivor = next(pid for pid in before.values() if pid != victim)
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(ConnectionClosed):
            clients[victim].recv(timeout=WAIT)  # its clients lose the connection ...
        echo(clients[survivor], "still here")  # ... the other worker's do not
        wa.wait_log(
            lambda t: wa.current()[victim_index] != victim, f"worker {victim_index} restarted"
        )
        assert "was killed by SIGKILL; restarting it" in wa.log()
        echo(clients[survivor], "still here after the restart")
        after = wa.current()
        new = after[victim_index]
        assert alive(new) and after[3 - victim_index] == survivor
        for i in range(MAX_TRIES):  # new clients are served, the new worker among them
            ws = stack.enter_context(open_ws(wa.url))
            echo(ws, f"new {i}")
            if owner_pid(ws, wa.port, [new, survivor]) == new:
                break
        else:
            pytest.fail("the restarted worker never served a new client")
        assert wa.proc.poll() is None


def test_sighup_rolling_restart_keeps_accepting(tmp_path: Path) -> None:
    with worker_app(tmp_path) as wa, contextlib.ExitStack() as stack:
        before = wa.current()
        old_clients = _one_on_each(wa, stack)
        refused: list[OSError] = []
        other: list[BaseException] = []
        served = [0]
        stop = threading.Event()

        def connect_in_a_loop() -> None:
            while not stop.is_set():
                try:
                    with open_ws(wa.url) as ws:
                        echo(ws, "ping")
                    served[0] += 1
                except ConnectionRefusedError as exc:
                    refused.append(exc)
                except OSError as exc:
                    if exc.errno == errno.ECONNREFUSED:
                        refused.append(exc)
                    else:
                        other.append(exc)
                except Exception as exc:  # a reset while queued, see docs/scaling.md
                    other.append(exc)

        t = threading.Thread(target=connect_in_a_loop, daemon=True)
        t.start()
        try:
            wa.wait_log(lambda t: served[0] > 0 or bool(refused), "the loop connecting")
            wa.signal(signal.SIGHUP)
            for ws in old_clients.values():
                _expect_going_away(ws)  # the old workers drained
            wa.wait_log(lambda t: "supervisor: rolling restart done" in t, "rolling restart")
            at_end = served[0]
            wa.wait_log(lambda t: served[0] > at_end + 5, "connections after the restart")
        finally:
            stop.set()
            t.join(WAIT)
        assert not refused, f"refused during the rolling restart: {refused[:3]}"
        after = wa.current()
        assert sorted(after) == [1, 2]
        assert set(after.values()).isdisjoint(before.values())
        assert all(not alive(pid) for pid in before.values())
        assert all(alive(pid) for pid in after.values())
        # each new worker was started before the old one of its index drained
        log = wa.log()
        for index, old in before.items():
            started = log.index(f"[w{index}] worker {index} (pid {after[index]}) serving")
            done = log.index(f"[w{index}] worker {index} (pid {old}) done")
            assert started < done
        wa.signal(signal.SIGTERM)
        assert wa.wait_exit() == 0
        # resets of connections caught in a closing accept queue (tcp_migrate_req=0)
        # are rare but possible; they are reported, not refused connections
        if other:
            print(f"{len(other)} of {served[0] + len(other)} loop connections failed: {other[:3]}")
