"""The backplane on other loops: its fds ride the adapter like the WebSockets do.

A context served by ``lwsbridge.adapters.run`` in a helper thread subscribes to
``ping`` and, from its callback (so in that loop's service thread), publishes each
message back on ``pong``; the test's own context, on the built-in loop, publishes and
collects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from bpkit import Inbox, pump, quiet_protocols, until_flowing

from lwsbridge import adapters
from lwsbridge.backplane import Backplane, connect
from lwsbridge.context import Context

N = 100


@pytest.fixture(params=["asyncio", "zmq", "trio"])
def loop_name(request: pytest.FixtureRequest) -> str:
    if request.param in ("zmq", "trio"):
        pytest.importorskip(request.param)
    return str(request.param)


class Echo:
    """A context on ``loop_name`` in its own thread, echoing ping -> pong."""

    def __init__(self, url: str, loop_name: str) -> None:
        self.url = url
        self.loop_name = loop_name
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.threads: set[int] = set()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        ctx = Context(quiet_protocols(), port=None)
        bp: Backplane | None = None
        try:
            bp = connect(ctx, self.url)
            echo_bp = bp

            def on_ping(channel: str, data: bytes) -> None:
                self.threads.add(threading.get_ident())
                echo_bp.publish("pong", data)

            bp.subscribe("ping", on_ping)
            self.ready.set()
            adapters.run(ctx, self.loop_name, self.stop)
        except BaseException as exc:
            self.error = exc
        finally:
            if bp is not None:
                bp.close()
            ctx.destroy()
            self.ready.set()


@pytest.fixture
def echo(broker_url: str, loop_name: str) -> Iterator[Echo]:
    e = Echo(broker_url, loop_name)
    e.thread.start()
    try:
        assert e.ready.wait(10)
        yield e
    finally:
        e.stop.set()
        e.thread.join(10)
    assert not e.thread.is_alive()
    assert e.error is None, repr(e.error)


def test_round_trip_through_an_adapter(
    echo: Echo, broker_url: str, make_ctx: Callable[..., Context]
) -> None:
    ctx = make_ctx(quiet_protocols())
    bp = connect(ctx, broker_url)
    try:
        inbox = Inbox()
        bp.subscribe("pong", inbox)
        until_flowing([ctx], bp, "ping", inbox, timeout=20)  # probes come back as pongs
        for i in range(N):
            assert bp.publish("ping", b"m%d" % i)
        pump([ctx], lambda: len(inbox.got) >= N, timeout=20, what=f"{N} pongs")
        assert inbox.data() == [b"m%d" % i for i in range(N)]
        assert echo.threads == {echo.thread.ident}  # callbacks ran in the loop's thread
    finally:
        bp.close()
