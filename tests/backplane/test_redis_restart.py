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
