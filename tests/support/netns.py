"""Network namespaces for the tests: the skip-or-fail check, ``ip``, namespaces, veth.

Generalizes what ``tests/ops/test_ops_keepalive.py`` builds by hand (two namespaces
joined by a veth pair).  Everything made here is removed on exit, also when the test
fails; names carry the test process's PID so parallel runs do not collide.
``exec_in`` runs a command in a namespace; ``socket_in`` / ``connect_in`` give the test
process itself sockets in one (clients "on" another host).
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from support.peers import missing_peer

_serial = itertools.count()


def ip(*args: str, timeout: float = 10.0) -> str:
    """Run ``ip ARGS``; its stdout, or RuntimeError with its stderr."""
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout)
    if r.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def require_netns() -> None:
    """Skip (or fail under LWSBRIDGE_REQUIRE_PEERS=1) unless namespaces can be made here:
    Linux, root, the ``ip`` command, and ``ip netns add`` actually working."""
    if not sys.platform.startswith("linux"):
        missing_peer("network namespaces", "Linux only")
    if os.geteuid() != 0:
        missing_peer("network namespaces", "needs root; CI runs as root")
    if shutil.which("ip") is None:
        missing_peer("the `ip` command", "apt-get install iproute2")
    probe = unique_name("probe")
    try:
        ip("netns", "add", probe)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        missing_peer("network namespaces", f"`ip netns add` failed: {exc}")
    with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
        ip("netns", "del", probe)


def exec_in(ns: str) -> list[str]:
    """The command prefix running a program in namespace ``ns``.  ``ip netns exec``
    execs the program, so the process's PID is the program's: it is stopped by PID."""
    return ["ip", "netns", "exec", ns]


def unique_name(tag: str) -> str:
    """A name for a namespace or device: at most 15 characters (IFNAMSIZ - 1)."""
    return f"lw{tag[:3]}{os.getpid() % 100000}x{next(_serial)}"[:15]


@contextlib.contextmanager
def namespaces(count: int) -> Iterator[list[str]]:
    """``count`` fresh network namespaces, loopback up; deleted on exit."""
    made: list[str] = []
    try:
        for _ in range(count):
            ns = unique_name("ns")
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        yield made
    finally:
        for ns in made:
            with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
                ip("netns", "del", ns)


@dataclass(frozen=True)
class VethPair:
    """Namespaces A and B joined by a veth pair (A: ``dev_a``/``addr_a``, B likewise)."""

    ns_a: str
    ns_b: str
    dev_a: str
    dev_b: str
    addr_a: str
    addr_b: str


@contextlib.contextmanager
def veth_pair() -> Iterator[VethPair]:
    """Two namespaces joined by a veth pair, addresses on a /30; all removed on exit
    (deleting a namespace deletes its end of the veth, and with it the other end)."""
    with namespaces(2) as (ns_a, ns_b):
        dev_a, dev_b = unique_name("va"), unique_name("vb")
        x = os.getpid() % 250
        addr_a, addr_b = f"10.231.{x}.1", f"10.231.{x}.2"
        ip(
            "link",
            "add",
            dev_a,
            "netns",
            ns_a,
            "type",
            "veth",
            "peer",
            "name",
            dev_b,
            "netns",
            ns_b,
        )
        for ns, dev, addr in ((ns_a, dev_a, addr_a), (ns_b, dev_b, addr_b)):
            ip("-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            ip("-n", ns, "link", "set", dev, "up")
        yield VethPair(ns_a, ns_b, dev_a, dev_b, addr_a, addr_b)


# ------------------------------------------------------- sockets of the test process in a namespace

_CLONE_NEWNET = 0x40000000


def socket_in(
    ns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM
) -> socket.socket:
    """A socket of this process made inside namespace ``ns``.

    A socket belongs to the namespace it was made in for its whole life, whichever
    thread then uses it; so a short-lived thread enters ``ns`` (setns(2), which moves
    only the calling thread; Python 3.11 has no ``os.setns``), makes the socket and
    ends.  The test's own threads never change namespace, and the test can hold
    clients "on" several hosts at once without a subprocess per client."""
    made: list[socket.socket | BaseException] = []

    def enter_and_make() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            made.append(socket.socket(family, kind))
        except BaseException as exc:
            made.append(exc)

    t = threading.Thread(target=enter_and_make, name=f"setns-{ns}")
    t.start()
    t.join()
    result = made[0]
    if isinstance(result, BaseException):
        raise result
    return result


def connect_in(ns: str, address: tuple[str, int], timeout: float = 10.0) -> socket.socket:
    """A TCP connection from namespace ``ns`` to ``address`` (blocking, ``timeout``)."""
    sock = socket_in(ns)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock
