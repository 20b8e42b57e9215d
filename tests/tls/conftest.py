"""Fixtures for the TLS suite: trustme certificates, servers on a helper thread, peers.

Certificates are made per session by ``trustme`` (a CA, a leaf for ``localhost`` and
``127.0.0.1``, an expired leaf) and by ``openssl`` (self-signed RSA-2048 pairs).
"""

from __future__ import annotations

import datetime
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
# adapterkit (the adapter drivers) is shared; subprocess helpers are in tests/support.
_ADAPTERS = str(HERE.parent / "adapters")
if _ADAPTERS not in sys.path:
    sys.path.insert(0, _ADAPTERS)

from tlsutil import openssl_selfsigned  # noqa: E402

from lwsbridge.context import Context  # noqa: E402

trustme = pytest.importorskip("trustme")


@dataclass
class Certs:
    ca_pem: str  # the trustme CA (to trust)
    cert: str  # leaf for localhost / 127.0.0.1, with its chain
    key: str
    expired_cert: str
    expired_key: str
    other_ca_cert: str  # leaf from a second CA nobody trusts (not self-signed)
    other_ca_key: str
    selfsigned_cert: str  # openssl, RSA-2048, CN=localhost + SAN
    selfsigned_key: str


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    ca_pem = d / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))

    def leaf(issuer: Any, name: str, **kw: Any) -> tuple[str, str]:
        c = issuer.issue_cert("localhost", "127.0.0.1", **kw)
        cert, key = d / f"{name}-cert.pem", d / f"{name}-key.pem"
        with open(cert, "wb") as f:
            for blob in c.cert_chain_pems:
                f.write(blob.bytes())
        c.private_key_pem.write_to_path(str(key))
        return str(cert), str(key)

    now = datetime.datetime.now(datetime.timezone.utc)
    cert, key = leaf(ca, "server")
    exp_cert, exp_key = leaf(
        ca,
        "expired",
        not_before=now - datetime.timedelta(days=30),
        not_after=now - datetime.timedelta(days=1),
    )
    other_cert, other_key = leaf(trustme.CA(), "other")
    ss_cert, ss_key = openssl_selfsigned(d)
    return Certs(str(ca_pem), cert, key, exp_cert, exp_key, other_cert, other_key, ss_cert, ss_key)


class ServerThread:
    """Services a context's built-in loop on a helper thread until stopped."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.port = ctx.port
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._calls: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._body, daemon=True)
        self.thread.start()

    def _body(self) -> None:
        self.ctx.adopt_thread()
        try:
            while not self._stop.is_set():
                self.ctx.service(20)
                with self._lock:
                    calls, self._calls = self._calls, []
                for fn in calls:
                    fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.ctx.destroy()

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run ``fn`` on the servicing thread and return its result."""
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            try:
                box.append(fn())
            finally:
                done.set()

        with self._lock:
            self._calls.append(run)
        self.ctx.cancel_service()
        assert done.wait(timeout), "server thread did not answer"
        return box[0]

    def stop(self) -> None:
        self._stop.set()
        self.ctx.cancel_service()
        self.thread.join(10)
        assert not self.thread.is_alive(), "server thread did not stop"
        if self.error is not None:
            raise self.error


@pytest.fixture
def serve() -> Iterator[Callable[[Context], ServerThread]]:
    """Run contexts on helper threads for the test; stopped (and destroyed) after it."""
    made: list[ServerThread] = []

    def start(ctx: Context) -> ServerThread:
        s = ServerThread(ctx)
        made.append(s)
        return s

    yield start
    for s in made:
        s.stop()
