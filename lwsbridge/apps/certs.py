"""The test apps' default TLS certificate: one self-signed pair made on first use.

Like lws's test apps it is a single self-signed certificate (not a CA-issued chain:
``libwebsockets-test-client --ssl -s`` accepts that and refuses an unknown CA), for
``localhost`` and ``127.0.0.1``, written to the user's cache directory; keys are never
part of the package.  Made with the ``openssl`` command, or ``cryptography`` if that
is installed instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["cache_dir", "default_cert"]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lwsbridge"


def default_cert() -> tuple[str, str]:
    """(cert path, key path) of the apps' self-signed certificate, made if missing."""
    d = cache_dir()
    cert, key = d / "test-server-cert.pem", d / "test-server-key.pem"
    if cert.exists() and key.exists():
        return str(cert), str(key)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(dir=d) as tmp:
        tcert, tkey = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        if shutil.which("openssl"):
            subprocess.run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    str(tkey),
                    "-out",
                    str(tcert),
                    "-days",
                    "3650",
                    "-subj",
                    "/CN=localhost",
                    "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
                ],
                check=True,
                capture_output=True,
            )
        else:
            _make_with_cryptography(tcert, tkey)
        tkey.chmod(0o600)
        # Rename into place: a concurrent first use never sees half a file.
        os.replace(tkey, key)
        os.replace(tcert, cert)
    return str(cert), str(key)


def _make_with_cryptography(cert_path: Path, key_path: Path) -> None:
    try:
        import datetime
        import ipaddress

        from cryptography import x509  # type: ignore[import-not-found,unused-ignore]
        from cryptography.hazmat.primitives import hashes, serialization  # type: ignore[import-not-found,unused-ignore]
        from cryptography.hazmat.primitives.asymmetric import rsa  # type: ignore[import-not-found,unused-ignore]
        from cryptography.x509.oid import NameOID  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise RuntimeError(
            "no openssl command and no 'cryptography' package: pass --cert and --key"
        ) from exc
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    san = x509.SubjectAlternativeName(
        [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(san, critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
