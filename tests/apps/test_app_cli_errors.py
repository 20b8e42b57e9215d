"""Bad command-line input to the test apps: one line naming the thing, no traceback.

Every row runs the app as a subprocess and checks the exit status (2 for a usage
error, as argparse's own; 1 when the app cannot start, such as a port in use), that
exactly one ``prog: ...`` line on stderr names the port, file, cipher list, URL or
extra, and that there is no traceback.  None of them needs a server: each input is
refused before anything connects, and the listening ones use 127.0.0.1.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomllib
import trustme

from lwsbridge.loops import LOOPS
from lwsbridge.tls import ClientTLS, ServerTLS

HOST = "127.0.0.1"
PROGS = {
    "demo_server": "lwsbridge-test-server",
    "echo_server": "lwsbridge-test-echo",
    "demo_client": "lwsbridge-test-client",
}
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
# Runs an app with pyzmq hidden: ``import zmq`` then raises ImportError, as without it.
NO_ZMQ = (
    "import runpy, sys; sys.modules['zmq'] = None; sys.argv[0] = 'app'; "
    "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)"
)


def run_app(app: str, *args: str, no_zmq: bool = False) -> subprocess.CompletedProcess[str]:
    module = f"lwsbridge.apps.{app}"
    cmd = [sys.executable, "-c", NO_ZMQ, module] if no_zmq else [sys.executable, "-m", module]
    return subprocess.run(
        [*cmd, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,  # each exits at once; one that serves instead is a failure
    )


def refused(proc: subprocess.CompletedProcess[str], app: str, status: int, *names: str) -> str:
    """The one ``prog: ...`` line, after checking status, names and no traceback."""
    prog = PROGS[app]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == status, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith(f"{prog}: ")]
    assert len(lines) == 1, proc.stderr
    for name in names:
        assert name in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def cert_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A valid certificate and key, so that only the option under test is wrong."""
    d = tmp_path_factory.mktemp("cli-certs")
    issued = trustme.CA().issue_cert(HOST)
    cert, key = d / "cert.pem", d / "key.pem"
    issued.cert_chain_pems[0].write_to_path(cert)
    issued.private_key_pem.write_to_path(key)
    return str(cert), str(key)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port some other socket listens on."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        yield int(s.getsockname()[1])


# -- a server that cannot start: exit 1 ------------------------------------------------


@pytest.mark.parametrize(
    ("app", "more"),
    [("demo_server", []), ("echo_server", []), ("echo_server", ["--workers", "2"])],
)
def test_port_in_use_names_the_port(app: str, more: list[str], busy_port: int) -> None:
    # With --workers the error comes from a worker process through the supervisor.
    proc = run_app(app, "-p", str(busy_port), "-i", HOST, *more)
    refused(proc, app, 1, f"port {busy_port}", "in use")


def test_interface_not_here_names_it() -> None:
    # 192.0.2.0/24 is TEST-NET-1: never an address of this host.
    proc = run_app("demo_server", "-p", "0", "-i", "192.0.2.1")
    refused(proc, "demo_server", 1, "192.0.2.1")


def test_missing_cert_file_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing-cert.pem")
    proc = run_app("demo_server", "-p", "0", "-i", HOST, "-s", "-C", missing)
    refused(proc, "demo_server", 1, repr(missing), "No such file")


def test_missing_key_file_is_named(tmp_path: Path, cert_pair: tuple[str, str]) -> None:
    missing = str(tmp_path / "missing-key.pem")
    proc = run_app("echo_server", "-p", "0", "-i", HOST, "-s", "-C", cert_pair[0], "-K", missing)
    line = refused(proc, "echo_server", 1, repr(missing), "key file")
    assert cert_pair[0] not in line  # the certificate is fine: it is not the one blamed


def test_cert_that_is_not_pem_is_named(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    proc = run_app("demo_server", "-p", "0", "-i", HOST, "-s", "-C", str(junk))
    refused(proc, "demo_server", 1, repr(str(junk)))


def test_invalid_cipher_list_is_named(cert_pair: tuple[str, str]) -> None:
    cert, key = cert_pair
    args = ["-p", "0", "-i", HOST, "-s", "-C", cert, "-K", key, "--cipher-list", "NO-SUCH"]
    line = refused(run_app("demo_server", *args), "demo_server", 1, "cipher list 'NO-SUCH'")
    assert "('" not in line  # not ssl's raw tuple


def test_client_missing_ca_is_named_not_an_internal_error(tmp_path: Path) -> None:
    # No server: the CA file is read before connecting (it was read per connection,
    # after connecting, as an "internal error" traceback each).
    missing = str(tmp_path / "missing-ca.pem")
    proc = run_app("demo_client", HOST, "-p", "1", "--ssl", "--ca", missing)
    refused(proc, "demo_client", 1, repr(missing), "CA file")
    assert "internal error" not in proc.stderr


# -- usage errors: exit 2, as argparse's ----------------------------------------------


@pytest.mark.parametrize(
    ("app", "args"),
    [
        ("demo_server", ["-p", "99999"]),
        ("demo_client", [HOST, "-p", "99999"]),
        ("demo_client", [HOST, "-p", "0"]),  # a port to connect to is 1-65535
    ],
)
def test_port_out_of_range(app: str, args: list[str]) -> None:
    refused(run_app(app, *args), app, 2, "-p/--port", repr(args[-1]))


@pytest.mark.parametrize("app", ["demo_server", "demo_client"])
def test_loop_without_its_library_names_the_extra(app: str) -> None:
    args = ["-p", "0", "-i", HOST] if app == "demo_server" else [HOST, "-p", "1"]
    proc = run_app(app, *args, "--loop", "zmq", no_zmq=True)
    refused(proc, app, 2, "--loop zmq", "pip install 'lwsbridge[zmq]'")


def test_every_loop_library_is_an_extra() -> None:
    # check_loop tells users to install the extra named like the module.
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    needed = {e.requires for e in LOOPS.values() if e.requires}
    assert needed and needed <= set(extras)


@pytest.mark.parametrize(
    ("opt", "url", "named"),
    [
        ("--client", "http://127.0.0.1:1/", "'http://127.0.0.1:1/'"),
        ("--client", "ws://", "'ws://'"),
        ("--client", "ws://127.0.0.1:99999/", "'ws://127.0.0.1:99999/'"),
        ("--autobahn-client", "localhost:9001", "'localhost:9001'"),
    ],
)
def test_echo_client_bad_url_is_named(opt: str, url: str, named: str) -> None:
    refused(run_app("echo_server", opt, url), "echo_server", 2, opt, named)


def test_echo_client_bad_sizes_are_named() -> None:
    proc = run_app("echo_server", "--client", "ws://127.0.0.1:1/", "--sizes", "10,ten")
    refused(proc, "echo_server", 2, "--sizes", "'10,ten'")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-C", "cert.pem"], "-C/--cert 'cert.pem' needs -s/--ssl"),
        (["-K", "key.pem"], "-K/--key 'key.pem' needs -s/--ssl"),
        (["--cipher-list", "HIGH"], "--cipher-list 'HIGH' needs -s/--ssl"),
        (["-s", "-K", "key.pem"], "-K/--key 'key.pem' needs -C/--cert"),
    ],
)
def test_tls_option_without_ssl_is_refused(args: list[str], named: str) -> None:
    refused(run_app("echo_server", "-p", "0", "-i", HOST, *args), "echo_server", 2, named)


@pytest.mark.parametrize("opt", ["-S", "-k", "--ca=ca.pem"])
def test_client_tls_option_without_ssl_is_refused(opt: str) -> None:
    proc = run_app("demo_client", HOST, "-p", "1", opt)
    refused(proc, "demo_client", 2, opt.partition("=")[0], "needs -s/--ssl")


def test_missing_resource_directory_is_named(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-dir")
    proc = run_app("demo_server", "-p", "0", "-i", HOST, "-r", missing)
    refused(proc, "demo_server", 2, "-r/--resource-path", repr(missing))


@pytest.mark.parametrize("value", ["-1", "0"])
def test_ping_interval_must_be_positive(value: str) -> None:
    proc = run_app("demo_server", "-p", "0", "-i", HOST, "--ping-interval", value)
    refused(proc, "demo_server", 2, "--ping-interval", repr(value))


@pytest.mark.parametrize("value", ["-1", "nan", "soon"])
def test_drain_timeout_must_not_be_negative(value: str) -> None:
    proc = run_app("echo_server", "-p", "0", "-i", HOST, "--drain-timeout", value)
    refused(proc, "echo_server", 2, "--drain-timeout", repr(value))


# -- short options mean the same in every app -----------------------------------------


@pytest.mark.parametrize("app", sorted(PROGS))
def test_short_s_is_ssl_everywhere(app: str) -> None:
    args = [HOST, "-h"] if app == "demo_client" else ["-h"]
    proc = run_app(app, *args)
    assert proc.returncode == 0, proc.stderr
    assert "-s, --ssl" in proc.stdout
    if app == "demo_client":
        assert "-S, --allow-selfsigned" in proc.stdout


def test_client_short_s_turns_tls_on(tmp_path: Path) -> None:
    # With -s as --ssl the CA file is read (and refused); were -s still
    # --allow-selfsigned, --ca would be a usage error for want of --ssl.
    missing = str(tmp_path / "missing-ca.pem")
    proc = run_app("demo_client", HOST, "-p", "1", "-s", "--ca", missing)
    refused(proc, "demo_client", 1, repr(missing))


# -- the library's own errors name the file -------------------------------------------


def test_tls_errors_name_the_file_and_keep_their_class(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(FileNotFoundError, match=r"nope\.pem") as err:
        ServerTLS(missing).build()
    assert err.value.errno == 2  # still usable by code that looks at errno
    with pytest.raises(FileNotFoundError, match=r"CA file .*nope\.pem"):
        ClientTLS(ca_file=missing).build()
    with pytest.raises(OSError, match="cipher list 'NO-SUCH'"):
        ClientTLS(cipher_list="NO-SUCH").build()
