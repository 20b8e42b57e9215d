"""Backplane URLs: redis://HOST:PORT and zmq://HOST:PORT, clear errors naming the URL."""

from __future__ import annotations

import pytest

from lwsbridge.backplane import BackplaneURL, BackplaneURLError, connect, parse_url
from lwsbridge.context import Context, Protocol


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("redis://127.0.0.1:6379", BackplaneURL("redis", "127.0.0.1", 6379)),
        ("REDIS://localhost:1/", BackplaneURL("redis", "localhost", 1)),
        ("zmq://10.0.0.2:5555", BackplaneURL("zmq", "10.0.0.2", 5555)),
        ("zmq://[::1]:7000", BackplaneURL("zmq", "::1", 7000)),
        ("redis://redis.example:65535", BackplaneURL("redis", "redis.example", 65535)),
    ],
)
def test_good(url: str, parsed: BackplaneURL) -> None:
    assert parse_url(url) == parsed


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("127.0.0.1:6379", "no scheme"),
        ("http://h:1", "unknown scheme"),
        ("redis://h", "no port"),
        ("redis://:6379", "no host"),
        ("redis://h:port", "not a number"),
        ("redis://h:0", "out of range"),
        ("redis://h:65536", "out of range"),
        ("zmq://h:65535", "out of range"),  # XPUB would be on 65536
        ("redis://h:1/0", "only HOST:PORT"),
        ("redis://user:pw@h:1", "only HOST:PORT"),
        ("zmq://::1:7000", "brackets"),
        ("zmq://[::1]7000", "[ADDRESS]:PORT"),
        ("zmq://[nope]:7000", "not an IPv6"),
    ],
)
def test_bad_names_the_url(url: str, why: str) -> None:
    with pytest.raises(BackplaneURLError) as info:
        parse_url(url)
    assert repr(url) in str(info.value)
    assert why in str(info.value)


def test_connect_rejects_before_touching_the_context() -> None:
    ctx = Context([Protocol("http", lambda *a: 0)], port=None)
    try:
        before = ctx.fds
        with pytest.raises(BackplaneURLError, match="nats://"):
            connect(ctx, "nats://127.0.0.1:4222")
        assert ctx.fds == before
    finally:
        ctx.destroy()
