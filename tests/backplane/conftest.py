"""Fixtures for the backplane tests: a real redis-server, the real zmq proxy, contexts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.contexts import context_factory
from support.redisserver import RedisServer, redis_server
from support.zmqproxy import ZmqProxy, zmq_proxy

from lwsbridge.context import Context


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path) as server:
        yield server


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[ZmqProxy]:
    pytest.importorskip("zmq")
    with zmq_proxy(tmp_path) as p:
        yield p


@pytest.fixture(params=["redis", "zmq"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """The URL of a running broker, once per backplane."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis")
        return server.url
    p: ZmqProxy = request.getfixturevalue("proxy")
    return p.url


@pytest.fixture
def make_ctx() -> Iterator[Callable[..., Context]]:
    yield from context_factory(port=None)
