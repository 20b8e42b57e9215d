"""Members of the test server's lws-mirror-protocol: websockets clients that record what
they receive (probes apart), and the bounded waits the mirror tests use.

Shared by tests/backplane (servers on loopback) and tests/workers/test_two_hosts.py
(servers in network namespaces: ``Member(..., netns=NS)`` connects from inside ``NS``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import pytest
from websockets.sync.client import ClientConnection, connect

from support.procs import HOST

__all__ = ["PROBE", "PROTO", "Member", "members_closed", "until_flowing", "wait_for"]

PROTO = "lws-mirror-protocol"
PROBE = "probe"


class Member:
    """A mirror member: a websockets client and what it received, probes apart."""

    def __init__(
        self, port: int, name: str, instance: str | None = None, *, netns: str | None = None
    ) -> None:
        self.name = name
        query = f"?mirror={instance}" if instance is not None else ""
        sock = None
        if netns is not None:
            from support.netns import connect_in

            sock = connect_in(netns, (HOST, port))
        # No receive queue limit: a test that sends a flood before taking its echoes
        # must not look like a member that stopped reading.
        self.ws: ClientConnection = _OPEN.enter_context(
            connect(
                f"ws://{HOST}:{port}/{query}",
                sock=sock,
                subprotocols=[PROTO],  # type: ignore[list-item]
                open_timeout=10,
                max_queue=None,
            )
        )
        self.got: list[str | bytes] = []
        self.probes: set[str] = set()

    def take(self) -> None:
        """Everything received by now (without waiting)."""
        while True:
            try:
                msg = self.ws.recv(timeout=0)
            except TimeoutError:
                return
            if isinstance(msg, str) and msg.startswith(PROBE):
                self.probes.add(msg)
            else:
                self.got.append(msg)

    def texts(self, prefix: str = "") -> list[str]:
        return [m for m in self.got if isinstance(m, str) and m.startswith(prefix)]


_OPEN = contextlib.ExitStack()  # the open connections, closed by members_closed


@contextlib.contextmanager
def members_closed() -> Iterator[list[Member]]:
    with _OPEN:
        yield []


def wait_for(
    members: list[Member], cond: Callable[[], bool], what: str, timeout: float = 15
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        for m in members:
            m.take()
        if cond():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def until_flowing(senders: list[Member], group: list[Member], timeout: float = 15) -> None:
    """Each sender sends probes until every member of ``group`` has one of them: its
    server's subscription (and every receiving server's) has reached the broker."""
    for s in senders:
        tag = f"{PROBE}-{s.name}"
        deadline = time.monotonic() + timeout
        while not all(any(p.startswith(tag + "-") for p in m.probes) for m in group):
            if time.monotonic() > deadline:
                pytest.fail(f"probes of {s.name} did not reach every member in {timeout} s")
            s.ws.send(f"{tag}-{time.monotonic()}")
            deadline_step = time.monotonic() + 0.1
            while time.monotonic() < deadline_step:
                for m in group:
                    m.take()
                time.sleep(0.01)
