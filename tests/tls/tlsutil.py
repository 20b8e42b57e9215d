"""Helpers shared by the TLS tests (importable from conftest and test modules)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def openssl_selfsigned(d: Path, name: str = "selfsigned", days: int = 30) -> tuple[str, str]:
    """A modern RSA-2048 self-signed pair for localhost / 127.0.0.1 made by openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command")
    cert, key = d / f"{name}-cert.pem", d / f"{name}-key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", str(days),
            "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return str(cert), str(key)
