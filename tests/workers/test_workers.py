"""``--workers 2``: real processes on one SO_REUSEPORT port, real sockets, stopped by PID."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from support.procs import stop_process
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


@pytest.mark.parametrize(
    ("loop", "sig"),
    [
        pytest.param(None, signal.SIGTERM, id="builtin-SIGTERM"),
        pytest.param(None, signal.SIGINT, id="builtin-SIGINT"),
        pytest.param("asyncio", signal.SIGTERM, id="asyncio-SIGTERM"),
        pytest.param("trio", signal.SIGTERM, id="trio-SIGTERM"),
        pytest.param("gevent", signal.SIGTERM, id="gevent-SIGTERM"),
    ],
)
def test_two_workers_serve_and_a_stop_drains(
    tmp_path: Path, loop: str | None, sig: signal.Signals
) -> None:
    extra = ["--loop", loop] if loop else []
    with worker_app(tmp_path, *extra) as wa, contextlib.ExitStack() as stack:
        workers = wa.current()
        assert sorted(workers) == [1, 2]
        clients = _one_on_each(wa, stack)  # both processes accept
        log = wa.log()
        assert "[w1] " in log and "[w2] " in log
        wa.signal(sig)
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


def test_workers_of_a_vanished_supervisor_drain_and_exit(tmp_path: Path) -> None:
    with worker_app(tmp_path) as wa, contextlib.ExitStack() as stack:
        workers = wa.current()
        clients = _one_on_each(wa, stack)
        wa.proc.kill()  # SIGKILL: it cannot tell the workers anything
        wa.proc.wait(timeout=WAIT)
        for ws in clients.values():
            _expect_going_away(ws)
        wa.wait_log(
            lambda t: all(f"(pid {pid}) done" in t for pid in workers.values()),
            "workers done",
            gone_ok=True,
        )
        assert f"the supervisor (pid {wa.proc.pid}) is gone: draining" in wa.log()
        wa.wait_log(
            lambda t: not any(alive(pid) for pid in workers.values()),
            "workers exited",
            gone_ok=True,
        )


LOOP_CLIENT = str(Path(__file__).with_name("loop_client.py"))


@contextlib.contextmanager
def _loop_client(
    wa: WorkerApp, tmp_path: Path, prefix: Sequence[str] = ()
) -> Iterator[Callable[[], dict[str, int]]]:
    """A client process connecting in a loop; yields a function that stops it and
    returns its counts (served, redirected, refused, other)."""
    stop_file = tmp_path / f"stop-{wa.port}"
    proc = subprocess.Popen(
        [*prefix, sys.executable, LOOP_CLIENT, wa.url, str(stop_file)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], WAIT)
        assert ready and proc.stdout.readline().strip() == "UP", "the loop client never got served"

        def finish() -> dict[str, int]:
            stop_file.touch()
            out, _ = proc.communicate(timeout=WAIT)
            counts: dict[str, int] = json.loads(out.strip().splitlines()[-1])
            return counts

        yield finish
    finally:
        stop_process(proc)  # type: ignore[arg-type]


def test_sighup_rolling_restart_keeps_accepting(tmp_path: Path) -> None:
    with worker_app(tmp_path) as wa, contextlib.ExitStack() as stack:
        before = wa.current()
        old_clients = _one_on_each(wa, stack)
        with _loop_client(wa, tmp_path) as finish:
            wa.signal(signal.SIGHUP)
            for ws in old_clients.values():
                _expect_going_away(ws)  # the old workers drained
            wa.wait_log(lambda t: "supervisor: rolling restart done" in t, "rolling restart")
            counts = finish()
        assert counts["refused"] == 0, counts
        print("loop client during the rolling restart:", counts)
        after = wa.current()
        assert sorted(after) == [1, 2]
        assert set(after.values()).isdisjoint(before.values())
        assert all(not alive(pid) for pid in before.values())
        assert all(alive(pid) for pid in after.values())
        # each new worker was listening before the old one of its index drained
        log = wa.log()
        for index, old in before.items():
            started = log.index(f"[w{index}] worker {index} (pid {after[index]}) serving")
            done = log.index(f"[w{index}] worker {index} (pid {old}) done")
            assert started < done
        for i in range(2):
            with open_ws(wa.url) as ws:
                echo(ws, f"after {i}")
        wa.signal(signal.SIGTERM)
        assert wa.wait_exit() == 0


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if r.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")


@pytest.fixture
def migrating_netns() -> Iterator[str]:
    """A network namespace with only lo, and net.ipv4.tcp_migrate_req = 1 in it."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace (CI has both)")
    ns = f"lwsb-w-{os.getpid()}"
    try:
        _ip("netns", "add", ns)
    except RuntimeError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc}")
    try:
        _ip("-n", ns, "link", "set", "lo", "up")
        r = subprocess.run(
            ["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.tcp_migrate_req=1"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if r.returncode:
            pytest.skip(f"no net.ipv4.tcp_migrate_req (Linux < 5.14?): {r.stderr.strip()}")
        yield ns
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            _ip("netns", "del", ns)


def test_sighup_with_tcp_migrate_req_loses_no_connection(
    tmp_path: Path, migrating_netns: str
) -> None:
    """With the sysctl, what waits in a draining worker's accept queue moves to the new
    worker: every connection of the loop is served or told to go away, none fails."""
    prefix = ["ip", "netns", "exec", migrating_netns]
    with worker_app(tmp_path, prefix=prefix) as wa:
        assert "tcp_migrate_req is 0" not in wa.log()
        before = wa.current()
        with _loop_client(wa, tmp_path, prefix) as finish:
            wa.signal(signal.SIGHUP)
            wa.wait_log(lambda t: "supervisor: rolling restart done" in t, "rolling restart")
            counts = finish()
        print("loop client during the rolling restart:", counts)
        assert counts["refused"] == 0 and counts["other"] == 0, counts
        assert counts["served"] > 0
        assert set(wa.current().values()).isdisjoint(before.values())
        wa.signal(signal.SIGTERM)
        assert wa.wait_exit() == 0
