"""A Redis restart: the backplane reconnects, subscribes again, and messages flow again."""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

import pytest
from bpkit import Inbox, pump, quiet_protocols, until_flowing
from support.redisserver import RedisServer

from lwsbridge.backplane import connect
from lwsbridge.backplane.redis_backplane import RedisBackplane
from lwsbridge.context import Context

RECONNECT_BOUND = 15.0  # seconds: max_backoff 0.2 s makes it well under a second here


def test_reconnect_and_resubscribe_after_redis_restart(
    redis: RedisServer, make_ctx: Callable[..., Context]
) -> None:
    pub_ctx, sub_ctx = make_ctx(quiet_protocols()), make_ctx(quiet_protocols())
    ctxs = [pub_ctx, sub_ctx]
    status: list[bool] = []
    pub = connect(pub_ctx, redis.url, max_backoff=0.2)
    sub = connect(sub_ctx, redis.url, max_backoff=0.2, on_status=status.append)
    assert isinstance(sub, RedisBackplane)
    try:
        inbox = Inbox()
        sub.subscribe("news", inbox)
        until_flowing(ctxs, pub, "news", inbox)
        assert sub.subscribed("news")
        assert pub.publish("news", b"before")
        pump(ctxs, lambda: inbox.data() == [b"before"], what="the message before the restart")
        assert status == [True]

        redis.stop()
        pump(ctxs, lambda: not pub.connected and not sub.connected, what="both to see it")
        assert status == [True, False]
        # At-most-once: a publish while Redis is away is dropped, and says so.
        assert pub.publish("news", b"lost") is False

        assert redis.start()
        pump(
            ctxs,
            lambda: pub.connected and sub.subscribed("news"),
            timeout=RECONNECT_BOUND,
            what="reconnect and SUBSCRIBE again",
        )
        assert status == [True, False, True]
        assert pub.publish("news", b"after")
        pump(ctxs, lambda: len(inbox.got) == 2, what="the message after the restart")
        assert inbox.data() == [b"before", b"after"]
    finally:
        pub.close()
        sub.close()


def test_redis_not_there_yet_is_retried(
    redis: RedisServer, make_ctx: Callable[..., Context]
) -> None:
    """Started before Redis: connection refused, retried with backoff, then it works."""
    redis.stop()
    ctx = make_ctx(quiet_protocols())
    bp = connect(ctx, redis.url, max_backoff=0.2)
    try:
        inbox = Inbox()
        bp.subscribe("late", inbox)
        # Refused (SO_ERROR on POLLOUT): a retry timer is armed, and nothing else happens.
        pump([ctx], lambda: ctx.next_timeout() is not None, what="a retry timer")
        assert not bp.connected
        assert redis.start()
        until_flowing([ctx], bp, "late", inbox)
        assert bp.connected
    finally:
        bp.close()


def test_out_of_fds_is_retried_like_a_refusal(
    redis: RedisServer, make_ctx: Callable[..., Context], monkeypatch: pytest.MonkeyPatch
) -> None:
    """socket() failing (EMFILE) in a reconnect must not end the retries."""
    from lwsbridge.backplane import redis_backplane

    class NoFdsYet:
        """The socket module, whose first two socket() calls fail with EMFILE."""

        failures = 2

        def __getattr__(self, name: str) -> Any:
            return getattr(socket, name)

        def socket(self, *args: Any, **kw: Any) -> socket.socket:
            if self.failures:
                self.failures -= 1
                raise OSError(errno.EMFILE, "Too many open files")
            return socket.socket(*args, **kw)

    shim = NoFdsYet()
    monkeypatch.setattr(redis_backplane, "socket", shim)
    ctx = make_ctx(quiet_protocols())
    bp = connect(ctx, redis.url, max_backoff=0.2)
    try:
        assert shim.failures == 0 and not bp.connected
        inbox = Inbox()
        bp.subscribe("fds", inbox)
        until_flowing([ctx], bp, "fds", inbox)
        assert bp.connected
    finally:
        bp.close()


def test_a_silent_redis_is_noticed_and_left_until_it_answers(
    redis: RedisServer, make_ctx: Callable[..., Context]
) -> None:
    """A stopped Redis keeps its TCP connections open and the kernel still accepts new
    ones: only the health check (PING unanswered) and the connect timeout (greeting
    PING unanswered) can tell.  It is given up, not counted as up while it is silent,
    and used again once it answers."""
    ctx = make_ctx(quiet_protocols())
    status: list[bool] = []
    bp = connect(
        ctx,
        redis.url,
        max_backoff=0.2,
        health_interval=0.2,
        connect_timeout=0.3,
        on_status=status.append,
    )
    assert isinstance(bp, RedisBackplane)
    try:
        inbox = Inbox()
        bp.subscribe("news", inbox)
        until_flowing([ctx], bp, "news", inbox)
        assert status == [True]

        redis.freeze()
        pump([ctx], lambda: not bp.connected, what="the health check to give up")
        assert status == [True, False]
        # Silent, it stays down: reconnects complete in the kernel, but a connection
        # that Redis has not answered is never up (a fixed number of service passes,
        # each one through at least one reconnect's connect timeout or backoff).
        for _ in range(40):
            ctx.service(25)
            assert not bp.connected
        assert status == [True, False]
        assert bp.publish("news", b"lost") is False

        redis.thaw()
        pump(
            [ctx],
            lambda: bp.connected and bp.subscribed("news"),
            timeout=RECONNECT_BOUND,
            what="reconnect and SUBSCRIBE again after the thaw",
        )
        assert status == [True, False, True]
        assert bp.publish("news", b"after")
        pump([ctx], lambda: inbox.data() == [b"after"], what="the message after the thaw")
    finally:
        redis.thaw()
        bp.close()


@pytest.mark.parametrize("option", ["health_interval", "connect_timeout"])
@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_health_options_are_checked(
    redis: RedisServer, make_ctx: Callable[..., Context], option: str, bad: float
) -> None:
    ctx = make_ctx(quiet_protocols())
    with pytest.raises(ValueError, match=option):
        connect(ctx, redis.url, **{option: bad})
