"""The ZeroMQ backplane's view of its proxy: connected, a silent proxy noticed, the
link back once it answers, and a clean close with its monitors' fds released."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from bpkit import Inbox, pump, quiet_protocols, until_flowing
from support.zmqproxy import ZmqProxy

from lwsbridge.backplane import connect
from lwsbridge.context import Context

pytest.importorskip("zmq")


def test_connected_follows_the_proxy_handshake(
    proxy: ZmqProxy, make_ctx: Callable[..., Context]
) -> None:
    ctx = make_ctx(quiet_protocols())
    status: list[bool] = []
    bp = connect(ctx, proxy.url, on_status=status.append)
    try:
        assert not bp.connected  # nothing is up before the handshakes
        pump([ctx], lambda: bp.connected, what="both sockets' ZMTP handshakes")
        assert status == [True]
    finally:
        bp.close()
    assert not bp.connected
    assert status == [True]  # closing is not a lost link


def test_a_silent_proxy_is_noticed_and_used_again_once_it_answers(
    proxy: ZmqProxy, make_ctx: Callable[..., Context]
) -> None:
    """A stopped proxy keeps its TCP connections open, and the SUB socket never writes,
    so without heartbeats nothing would ever tell: the subscriber would wait for ever.
    With ZMTP heartbeats the silent connection is dropped, ``connected`` goes False and
    ``on_status(False)`` is called; after the thaw ZeroMQ's reconnect completes, the
    subscriptions are sent again and messages flow."""
    ctx = make_ctx(quiet_protocols())
    status: list[bool] = []
    bp = connect(ctx, proxy.url, health_interval=0.2, on_status=status.append)
    try:
        inbox = Inbox()
        bp.subscribe("news", inbox)
        until_flowing([ctx], bp, "news", inbox)
        assert bp.connected and status == [True]

        proxy.freeze()
        pump([ctx], lambda: not bp.connected, what="the heartbeat to give up")
        assert status == [True, False]

        proxy.thaw()
        pump([ctx], lambda: bp.connected, timeout=15.0, what="the reconnect after the thaw")
        assert status == [True, False, True]
        until_flowing([ctx], bp, "news", inbox)
        assert bp.publish("news", b"after")
        pump([ctx], lambda: inbox.data() == [b"after"], what="the message after the thaw")
    finally:
        proxy.thaw()
        bp.close()


def test_the_monitors_fds_join_the_poll_set_and_leave_it_on_close(
    proxy: ZmqProxy, make_ctx: Callable[..., Context]
) -> None:
    ctx = make_ctx(quiet_protocols())
    before = {fd for fd, _ in ctx.fds}
    bp = connect(ctx, proxy.url)
    assert len({fd for fd, _ in ctx.fds} - before) == 3  # SUB + the two monitors
    bp.close()  # before the monitors' first look (a timer): it must find them closed
    assert {fd for fd, _ in ctx.fds} == before
    for _ in range(3):
        ctx.service(5)
    assert not bp.connected


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_health_interval_is_checked(
    proxy: ZmqProxy, make_ctx: Callable[..., Context], bad: float
) -> None:
    ctx = make_ctx(quiet_protocols())
    with pytest.raises(ValueError, match="health_interval"):
        connect(ctx, proxy.url, health_interval=bad)
