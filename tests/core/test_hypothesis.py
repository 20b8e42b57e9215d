"""Property tests: random messages survive random fragmentation and chunking; garbage
never raises out of ``receive_data``."""

from __future__ import annotations

import itertools
import os

from helpers import open_client, open_server, upgrade_request
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lwsbridge.core import (
    Closed,
    DataReceived,
    MessageAssembler,
    Role,
    State,
    WSConnection,
)

# The number of examples, the deadline and whether the run is derandomized come from the
# hypothesis profile tests/conftest.py loads (``ci``, ``dev`` or ``long``).
SETTINGS = settings(suppress_health_check=[HealthCheck.too_slow])

messages_st = st.lists(
    st.one_of(st.text(max_size=300), st.binary(max_size=300)), min_size=1, max_size=6
)


def split_points(draw: st.DrawFn, n: int, max_parts: int = 6) -> list[int]:
    cuts = draw(st.lists(st.integers(0, n), max_size=max_parts))
    return sorted(set(cuts))


@st.composite
def fragmented(draw: st.DrawFn) -> list[tuple[str | bytes, list[int]]]:
    msgs = draw(messages_st)
    out = []
    for m in msgs:
        raw = m.encode() if isinstance(m, str) else m
        out.append((m, split_points(draw, len(raw))))
    return out


def send_all(sender: WSConnection, plan: list[tuple[str | bytes, list[int]]]) -> bytes:
    for msg, cuts in plan:
        raw = msg.encode() if isinstance(msg, str) else msg
        bounds = [0, *cuts, len(raw)]
        parts = [raw[a:b] for a, b in itertools.pairwise(bounds)]
        for i, part in enumerate(parts):
            sender.send_data(part, binary=isinstance(msg, bytes), final=i == len(parts) - 1)
    return b"".join(sender.data_to_send())


def receive_chunked(receiver: WSConnection, wire: bytes, cuts: list[int]) -> list[str | bytes]:
    asm = MessageAssembler(max_size=0)
    got: list[str | bytes] = []
    bounds = [0, *sorted(set(cuts)), len(wire)]
    for a, b in itertools.pairwise(bounds):
        receiver.receive_data(wire[a:b])
        for ev in receiver.events():
            assert isinstance(ev, DataReceived), ev
            m = asm.feed(ev)
            if m is not None:
                got.append(m.data)
    return got


@SETTINGS
@given(plan=fragmented(), data=st.data())
def test_round_trip_client_to_server(plan, data) -> None:  # type: ignore[no-untyped-def]
    client, server = open_client(), open_server()
    wire = send_all(client, plan)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=20))
    assert receive_chunked(server, wire, cuts) == [m for m, _ in plan]
    assert server.state is State.OPEN and server.data_to_send() == []


@SETTINGS
@given(plan=fragmented(), data=st.data())
def test_round_trip_server_to_client(plan, data) -> None:  # type: ignore[no-untyped-def]
    client, server = open_client(), open_server()
    wire = send_all(server, plan)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=20))
    assert receive_chunked(client, wire, cuts) == [m for m, _ in plan]
    assert client.state is State.OPEN and client.data_to_send() == []


def check_garbage(conn: WSConnection, garbage: bytes, cuts: list[int]) -> None:
    bounds = [0, *sorted(set(cuts)), len(garbage)]
    for a, b in itertools.pairwise(bounds):
        conn.receive_data(garbage[a:b])  # must never raise
    out = conn.data_to_send()
    events = conn.events()
    closed = [e for e in events if isinstance(e, Closed)]
    assert len(closed) <= 1
    if conn.state is State.CLOSED:
        assert len(closed) == 1 and events[-1] is closed[0]
        if conn.role is Role.CLIENT and closed[0].clean:
            # RFC 6455 §7.1.1: after a clean close handshake the client waits for the
            # server to close TCP first (lwsbridge.core.state, "Who closes the transport").
            assert b"" not in out
        else:
            assert out and out[-1] == b"" and out.count(b"") == 1
    else:
        assert b"" not in out and not closed


garbage_st = st.one_of(
    st.binary(max_size=400),
    # frame-ish garbage: plausible headers followed by random bytes
    st.builds(
        lambda b0, b1, rest: bytes([b0, b1]) + rest,
        st.integers(0, 255),
        st.integers(0, 255),
        st.binary(max_size=200),
    ),
)


@SETTINGS
@given(garbage=garbage_st, cuts=st.lists(st.integers(0, 400), max_size=10))
def test_garbage_open_server(garbage: bytes, cuts: list[int]) -> None:
    check_garbage(open_server(), garbage, cuts)


@SETTINGS
@given(garbage=garbage_st, cuts=st.lists(st.integers(0, 400), max_size=10))
# A server close then garbage: the client answers and waits for the server's FIN (the
# first failure hypothesis found, kept so every run covers it).
@example(garbage=b"\x88\x00", cuts=[])
@example(garbage=b"\x88\x04\x0f\xa0ok" + b"\xff" * 8, cuts=[1, 3])
def test_garbage_open_client(garbage: bytes, cuts: list[int]) -> None:
    check_garbage(open_client(), garbage, cuts)


head_garbage_st = st.one_of(
    st.binary(max_size=400),
    # mutate a valid request: random bytes spliced into it
    st.builds(
        lambda pos, junk: (lambda r: r[: pos % len(r)] + junk + r[pos % len(r) :])(
            upgrade_request()
        ),
        st.integers(0, 1000),
        st.binary(min_size=1, max_size=20),
    ),
    st.builds(
        lambda lines: b"GET / HTTP/1.1\r\n" + b"\r\n".join(lines) + b"\r\n\r\n",
        st.lists(st.binary(max_size=40), max_size=6),
    ),
)


@SETTINGS
@given(garbage=head_garbage_st, cuts=st.lists(st.integers(0, 420), max_size=10))
def test_garbage_handshake_server(garbage: bytes, cuts: list[int]) -> None:
    conn = WSConnection(Role.SERVER, max_head_size=256)
    check_garbage(conn, garbage, cuts)
    if conn.state is State.UPGRADE_PENDING:
        conn.accept()
        conn.data_to_send()
        conn.events()
    elif conn.state is State.HTTP_RESPONDING:
        conn.send_http_response(200)


@SETTINGS
@given(
    garbage=st.one_of(
        st.binary(max_size=400),
        st.builds(
            lambda tail: b"HTTP/1.1 101 Switching Protocols\r\n" + tail,
            st.binary(max_size=200),
        ),
    ),
    cuts=st.lists(st.integers(0, 400), max_size=10),
)
def test_garbage_handshake_client(garbage: bytes, cuts: list[int]) -> None:
    conn = WSConnection(Role.CLIENT)
    conn.initiate("example.com")
    conn.data_to_send()
    check_garbage(conn, garbage, cuts)


def test_profile_follows_the_environment() -> None:
    """CI (CI or HYPOTHESIS_PROFILE=ci) runs derandomized, so it cannot depend on luck."""
    name = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    profile = settings.get_profile(name)
    assert settings.default.derandomize is profile.derandomize
    assert settings.default.max_examples == profile.max_examples
    assert settings.get_profile("ci").derandomize and settings.get_profile("ci").database is None
    assert not settings.get_profile("long").derandomize
    assert settings.get_profile("long").max_examples == 10 * settings.get_profile("ci").max_examples
