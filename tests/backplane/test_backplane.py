"""Both backplanes against their real brokers: two contexts, built-in loops, one thread."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from bpkit import Inbox, pump, quiet_protocols, until_flowing
from support.zmqproxy import ZmqProxy

from lwsbridge.backplane import connect
from lwsbridge.context import Context

N = 300  # messages per publisher: enough to reorder if anything could


def test_publish_subscribe_in_order_per_publisher(
    broker_url: str, make_ctx: Callable[..., Context]
) -> None:
    a, b, c = (make_ctx(quiet_protocols()) for _ in range(3))
    bp_a, bp_b, bp_c = (connect(x, broker_url) for x in (a, b, c))
    try:
        inbox = Inbox()
        bp_c.subscribe("room", inbox)
        until_flowing([a, b, c], bp_a, "room", inbox)
        until_flowing([a, b, c], bp_b, "room", inbox)
        for i in range(N):
            assert bp_a.publish("room", b"a%d" % i)
            assert bp_b.publish("room", f"b{i}")  # str goes as UTF-8
        pump([a, b, c], lambda: len(inbox.got) >= 2 * N, what="every message")
        got = inbox.data()
        assert [d for d in got if d.startswith(b"a")] == [b"a%d" % i for i in range(N)]
        assert [d for d in got if d.startswith(b"b")] == [b"b%d" % i for i in range(N)]
        assert {ch for ch, _ in inbox.got} == {"room"}
    finally:
        for bp in (bp_a, bp_b, bp_c):
            bp.close()


def test_channels_match_exactly_and_unsubscribe_stops_delivery(
    broker_url: str, make_ctx: Callable[..., Context]
) -> None:
    pub_ctx, sub_ctx = make_ctx(quiet_protocols()), make_ctx(quiet_protocols())
    pub, sub = connect(pub_ctx, broker_url), connect(sub_ctx, broker_url)
    ctxs = [pub_ctx, sub_ctx]
    try:
        first, second, marker = Inbox(), Inbox(), Inbox()
        sub.subscribe("a", first)
        sub.subscribe("a", second)
        sub.subscribe("marker", marker)
        until_flowing(ctxs, pub, "a", first)
        until_flowing(ctxs, pub, "marker", marker)
        # "ab" shares a prefix with "a": ZeroMQ would match it without the terminator.
        pub.publish("ab", b"not for a")
        pub.publish("a", b"one")
        pub.publish("marker", b"m1")
        pump(ctxs, lambda: marker.data() == [b"m1"], what="marker m1")
        assert first.data() == [b"one"] and second.data() == [b"one"]

        sub.unsubscribe("a", first)  # one callback: the other still gets messages
        pub.publish("a", b"two")
        pub.publish("marker", b"m2")
        pump(ctxs, lambda: len(marker.data()) == 2, what="marker m2")
        assert first.data() == [b"one"]
        assert second.data() == [b"one", b"two"]

        sub.unsubscribe("a")  # every callback: the broker is told
        pub.publish("a", b"three")
        pub.publish("marker", b"m3")
        pump(ctxs, lambda: len(marker.data()) == 3, what="marker m3")
        assert first.data() == [b"one"] and second.data() == [b"one", b"two"]
    finally:
        pub.close()
        sub.close()


def test_callback_that_raises_is_logged_and_others_still_run(
    broker_url: str, make_ctx: Callable[..., Context], caplog: pytest.LogCaptureFixture
) -> None:
    ctx = make_ctx(quiet_protocols())
    bp = connect(ctx, broker_url)
    try:
        inbox = Inbox()

        def broken(channel: str, data: bytes) -> None:
            if not data.startswith(b"probe"):
                raise RuntimeError("subscriber bug")

        bp.subscribe("c", broken)
        bp.subscribe("c", inbox)
        until_flowing([ctx], bp, "c", inbox)  # one context publishes to itself
        bp.publish("c", b"x")
        bp.publish("c", b"y")
        pump([ctx], lambda: len(inbox.got) == 2, what="both messages")
        assert inbox.data() == [b"x", b"y"]
        assert "subscriber bug" in caplog.text
    finally:
        bp.close()


def test_close_releases_the_fds_and_destroy_releases_the_rest(
    broker_url: str, make_ctx: Callable[..., Context]
) -> None:
    ctx = make_ctx(quiet_protocols())
    before = {fd for fd, _ in ctx.fds}
    bp = connect(ctx, broker_url)
    inbox = Inbox()
    bp.subscribe("x", inbox)
    until_flowing([ctx], bp, "x", inbox)
    assert {fd for fd, _ in ctx.fds} > before
    bp.close()
    assert {fd for fd, _ in ctx.fds} == before
    bp.close()  # twice is harmless


def test_bad_channel_is_a_clear_error(redis_url_ctx: tuple[Context, str]) -> None:
    ctx, url = redis_url_ctx
    bp = connect(ctx, url)
    try:
        for bad in ("", "a\0b"):
            with pytest.raises(ValueError, match="channel"):
                bp.publish(bad, b"x")
            with pytest.raises(ValueError, match="channel"):
                bp.subscribe(bad, lambda c, d: None)
    finally:
        bp.close()


@pytest.fixture
def redis_url_ctx(make_ctx: Callable[..., Context]) -> tuple[Context, str]:
    # No broker needed: validation happens before anything is sent.
    return make_ctx(quiet_protocols()), "redis://127.0.0.1:1"


def test_zmq_drain_budget_leaves_nothing_behind(
    proxy: ZmqProxy, make_ctx: Callable[..., Context], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a tiny budget, a burst is taken over several passes: the ZMQ_FD edge is
    consumed by the first drain, so a timer must bring the rest (ZMQ_EVENTS still POLLIN)."""
    from lwsbridge.backplane import zmq_backplane

    monkeypatch.setattr(zmq_backplane, "_DRAIN_BUDGET", 2)
    pub_ctx, sub_ctx = make_ctx(quiet_protocols()), make_ctx(quiet_protocols())
    pub, sub = connect(pub_ctx, proxy.url), connect(sub_ctx, proxy.url)
    try:
        inbox = Inbox()
        sub.subscribe("burst", inbox)
        until_flowing([pub_ctx, sub_ctx], pub, "burst", inbox)
        for i in range(50):
            pub.publish("burst", b"%d" % i)
        # Only the subscriber's loop runs now: nothing else would wake it.
        pump([sub_ctx], lambda: len(inbox.got) == 50, what="the whole burst")
        assert inbox.data() == [b"%d" % i for i in range(50)]
    finally:
        pub.close()
        sub.close()
