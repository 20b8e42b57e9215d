"""The test server's live status: ``/stats`` and the ``lws-status`` protocol.

The server is the real demo server context, serviced on a thread; the clients are the
websockets library's sync client and plain HTTP over real loopback sockets.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from lwsbridge.apps import demo_server
from lwsbridge.apps.status import Meter, Status
from lwsbridge.context import Context

WAIT = 5.0  # seconds any one wait may take before the test fails


class Server:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        assert ctx.port is not None
        self.port = ctx.port
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.ctx.adopt_thread()
        while not self._stop.is_set():
            self.ctx.service(20)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        assert not self._thread.is_alive()
        self.ctx.adopt_thread()
        self.ctx.destroy()

    def ws(self, protocol: str, agent: str) -> ClientConnection:
        return connect(
            f"ws://127.0.0.1:{self.port}/",
            subprotocols=[protocol],  # type: ignore[list-item]
            user_agent_header=agent,
            open_timeout=WAIT,
            close_timeout=WAIT,
        )

    def http(self, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        try:
            c.request(method, path)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def stats(self) -> dict[str, Any]:
        status, headers, body = self.http("GET", "/stats")
        assert status == 200
        assert headers["content-type"] == "application/json"
        doc: dict[str, Any] = json.loads(body)
        return doc


@pytest.fixture
def make_server() -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(**kw: Any) -> Server:
        srv = Server(demo_server.build_context(0, "127.0.0.1", **kw))
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.close()


def _until(get: Callable[[], dict[str, Any]], cond: Callable[[dict[str, Any]], bool]) -> Any:
    """The first document from ``get`` that ``cond`` accepts (fails after WAIT)."""
    deadline = time.monotonic() + WAIT
    while True:
        doc = get()
        if cond(doc):
            return doc
        if time.monotonic() > deadline:
            pytest.fail(f"no document as expected within {WAIT} s; last: {doc}")
        time.sleep(0.02)


def _peer(ws: ClientConnection) -> str:
    host, port = ws.local_address[:2]
    return f"{host}:{port}"


def test_stats_json_with_two_clients(make_server: Callable[..., Server]) -> None:
    srv = make_server()
    empty = srv.stats()
    assert empty["connections"] == 0 and empty["clients"] == []
    assert set(empty["protocols"]) == {
        "dumb-increment-protocol",
        "lws-mirror-protocol",
        "lws-status",
    }
    with srv.ws("dumb-increment-protocol", "counter/1.0") as di:
        with srv.ws("lws-mirror-protocol", "painter/2.0") as mirror:
            numbers = [di.recv(timeout=WAIT) for _ in range(3)]
            assert numbers == ["0", "1", "2"]
            mirror.send("d #ff0000 1 2 3 4;")
            assert mirror.recv(timeout=WAIT) == "d #ff0000 1 2 3 4;"  # its own, mirrored

            doc = srv.stats()
            assert doc["connections"] == 2
            clients = {c["protocol"]: c for c in doc["clients"]}
            assert clients["dumb-increment-protocol"]["peer"] == _peer(di)
            assert clients["dumb-increment-protocol"]["user_agent"] == "counter/1.0"
            assert clients["lws-mirror-protocol"]["peer"] == _peer(mirror)
            assert clients["lws-mirror-protocol"]["user_agent"] == "painter/2.0"
            for c in clients.values():
                assert c["seconds"] >= 0
                assert abs(c["connected_at"] - time.time()) < 3600  # wall clock, not monotonic

            protos = doc["protocols"]
            m = protos["lws-mirror-protocol"]
            assert m["connections"] == 1
            assert (m["rx"]["messages"], m["rx"]["bytes"]) == (1, 18)
            assert (m["tx"]["messages"], m["tx"]["bytes"]) == (1, 18)
            # inside the window: the rates count the one message
            assert m["rx"]["messages_per_s"] > 0 and m["rx"]["bytes_per_s"] > 0
            d = protos["dumb-increment-protocol"]
            assert d["connections"] == 1
            assert d["rx"]["messages"] == 0
            assert d["tx"]["messages"] >= 3 and d["tx"]["bytes"] >= 3
            assert d["tx"]["messages_per_s"] > 0
            assert protos["lws-status"]["connections"] == 0
        # the mirror client left: counted out, its totals stay
        doc = _until(srv.stats, lambda d: d["connections"] == 1)
        assert [c["protocol"] for c in doc["clients"]] == ["dumb-increment-protocol"]
        assert doc["protocols"]["lws-mirror-protocol"]["rx"]["messages"] == 1


def test_stats_other_methods(make_server: Callable[..., Server]) -> None:
    srv = make_server()
    status, headers, _ = srv.http("POST", "/stats")
    assert status == 405
    assert headers["allow"] == "GET"
    status, headers, _ = srv.http("GET", "/stats?x=1")  # a query string is ignored
    assert status == 200 and headers["content-type"] == "application/json"


def _recv_doc(ws: ClientConnection) -> dict[str, Any]:
    msg = ws.recv(timeout=WAIT)
    assert isinstance(msg, str)
    doc: dict[str, Any] = json.loads(msg)
    return doc


def test_status_member_sees_a_client_come_and_go(make_server: Callable[..., Server]) -> None:
    srv = make_server()
    with srv.ws("lws-status", "watcher/1.0") as watcher:
        first = _recv_doc(watcher)  # sent at once on joining, listing itself
        assert first["connections"] == 1
        assert first["clients"][0]["user_agent"] == "watcher/1.0"
        assert first["clients"][0]["protocol"] == "lws-status"

        def agents(doc: dict[str, Any]) -> set[str]:
            return {c["user_agent"] for c in doc["clients"]}

        with srv.ws("lws-mirror-protocol", "visitor/3.0") as visitor:
            doc = _until(lambda: _recv_doc(watcher), lambda d: "visitor/3.0" in agents(d))
            assert doc["connections"] == 2
            assert doc["protocols"]["lws-mirror-protocol"]["connections"] == 1
            assert _peer(visitor) in {c["peer"] for c in doc["clients"]}
        doc = _until(lambda: _recv_doc(watcher), lambda d: "visitor/3.0" not in agents(d))
        assert doc["connections"] == 1
        assert doc["protocols"]["lws-mirror-protocol"]["connections"] == 0
        # the watcher's own documents are counted for lws-status
        assert doc["protocols"]["lws-status"]["tx"]["messages"] >= 2


def test_status_documents_are_rate_limited(make_server: Callable[..., Server]) -> None:
    # With an interval of an hour, a member gets its first document and then none,
    # however much changes: a change only arms its timer.
    srv = make_server(status=Status(interval=3600.0))
    with srv.ws("lws-status", "watcher/1.0") as watcher:
        assert _recv_doc(watcher)["connections"] == 1
        with srv.ws("dumb-increment-protocol", "busy/1.0") as di:
            for _ in range(10):  # half a second of changes
                di.recv(timeout=WAIT)
        with pytest.raises(TimeoutError):
            watcher.recv(timeout=0.3)
        # ... while /stats is always current
        doc = _until(srv.stats, lambda d: d["connections"] == 1)
        assert doc["protocols"]["dumb-increment-protocol"]["tx"]["messages"] >= 10


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_meter_rates_slide_out_of_the_window() -> None:
    clock = FakeClock()
    m = Meter(window=2.0, bucket=0.1, clock=clock)
    assert m.rates() == (0.0, 0.0, 0.0, 0.0) and not m.busy()
    m.rx(100)
    m.rx(50, messages=0)  # a fragment: bytes, no message
    m.tx(10)
    m.tx(10)
    assert m.rates() == (0.5, 75.0, 1.0, 10.0)
    clock.now += 1.5
    m.rx(100)
    assert m.rates() == (1.0, 125.0, 1.0, 10.0)  # both inside the 2 s window
    clock.now += 1.0  # the first ones are 2.5 s old: gone
    assert m.rates() == (0.5, 50.0, 0.0, 0.0) and m.busy()
    clock.now += 2.0
    assert m.rates() == (0.0, 0.0, 0.0, 0.0) and not m.busy()
    # the totals never slide
    assert (m.rx_messages, m.rx_bytes, m.tx_messages, m.tx_bytes) == (2, 250, 2, 20)


def test_meter_rate_of_a_steady_flow() -> None:
    clock = FakeClock()
    m = Meter(window=1.0, bucket=0.1, clock=clock)
    for _ in range(1000):
        m.tx(1)
        clock.now += 0.05
    assert m.rates()[2] == pytest.approx(20.0, abs=2.0)
    assert m.tx_messages == 1000
    assert m.as_dict()["tx"]["messages_per_s"] == pytest.approx(20.0, abs=2.0)


def test_meter_rejects_a_bad_bucket() -> None:
    with pytest.raises(ValueError, match="bucket"):
        Meter(window=1.0, bucket=2.0)


def test_a_protocol_is_tracked_once() -> None:
    status = Status()
    with pytest.raises(ValueError, match="lws-status"):
        status.track(status.protocol)


def test_a_protocol_is_tracked_by_one_status_only() -> None:
    # A Mirror given to two contexts would count its traffic twice, in the wrong place.
    mirror = demo_server.Mirror()
    ctx = demo_server.build_context(0, "127.0.0.1", mirror=mirror)
    try:
        with pytest.raises(ValueError, match="lws-mirror-protocol"):
            demo_server.build_context(0, "127.0.0.1", mirror=mirror)
    finally:
        ctx.destroy()
