"""TLS settings for the context: stdlib ``ssl`` contexts, used through MemoryBIO (sans-IO).

The context never lets ``ssl`` touch a socket: bytes from the socket go into an
incoming ``MemoryBIO``, an ``SSLObject`` turns them into plaintext for the core, and
what it writes to the outgoing ``MemoryBIO`` goes to the socket.  So a TLS connection
is driven by the same poll events and ``service_fd`` calls as a plain one, on every
adapter, and never blocks.

What Python's ``ssl`` does not allow: TLS 1.3 cipher suites cannot be chosen
(``SSL_CTX_set_ciphersuites`` is not exposed); ``ssl_cipher_list`` applies to TLS 1.2
and below, and ``ssl_tls13_only`` / ``ssl_max_version`` let you keep TLS 1.2 so that it
applies to every connection.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ClientTLS",
    "ServerTLS",
    "describe_ssl_error",
    "is_self_signed",
]


@dataclass
class ServerTLS:
    """lws vhost TLS options (``ssl_cert_filepath``, ``ssl_private_key_filepath``, ...).

    ``context`` replaces everything else when given.  ``cipher_list`` is an OpenSSL
    cipher string (lws ``ssl_cipher_list``; None = OpenSSL's default set).
    ``ca_file`` + ``require_client_cert`` ask clients for a certificate
    (lws ``LWS_SERVER_OPTION_REQUIRE_VALID_OPENSSL_CLIENT_CERT``).  ``sni_callback`` is
    ``ssl.SSLContext.sni_callback``.  ALPN offers ``http/1.1``.
    """

    cert_file: str | None = None
    key_file: str | None = None
    context: ssl.SSLContext | None = None
    cipher_list: str | None = None
    ca_file: str | None = None
    require_client_cert: bool = False
    sni_callback: Callable[[Any, str | None, ssl.SSLContext], int | None] | None = None
    max_version: ssl.TLSVersion | None = None
    #: TLS 1.3 session tickets sent after each handshake (OpenSSL's default is 2).
    #: 0 by default: WebSocket clients rarely resume, each ticket costs an encryption
    #: and a record per connection, and a ticket arriving while a threaded client
    #: (websockets' sync client) sends its request can make it lose that write.
    session_tickets: int = 0

    def build(self) -> ssl.SSLContext:
        if self.context is not None:
            return self.context
        if not self.cert_file:
            raise ValueError("a TLS server needs cert_file (and key_file) or an SSLContext")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _load_cert_chain(ctx, self.cert_file, self.key_file)
        ctx.num_tickets = self.session_tickets
        if self.cipher_list:
            _set_ciphers(ctx, self.cipher_list)
        if self.max_version is not None:
            ctx.maximum_version = self.max_version
        if self.ca_file:
            try:
                ctx.load_verify_locations(self.ca_file)
            except OSError as exc:
                raise _file_error(exc, ("CA file", self.ca_file)) from None
        if self.require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
        if self.sni_callback is not None:
            ctx.sni_callback = self.sni_callback
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx


@dataclass
class ClientTLS:
    """Client-side TLS (lws ``LCCSCF_*`` flags).

    Verification is on by default against the system store or ``ca_file``, with the
    host name checked.  ``allow_self_signed`` (lws ``LCCSCF_ALLOW_SELFSIGNED``) accepts
    a server whose certificate is its own issuer; ``insecure`` (lws
    ``LCCSCF_ALLOW_INSECURE`` + ``SKIP_SERVER_CERT_HOSTNAME_CHECK``) accepts anything.
    """

    ca_file: str | None = None
    cipher_list: str | None = None
    allow_self_signed: bool = False
    insecure: bool = False
    cert_file: str | None = None
    key_file: str | None = None
    max_version: ssl.TLSVersion | None = None

    def build(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(cafile=self.ca_file)
        except OSError as exc:
            raise _file_error(exc, ("CA file", self.ca_file)) from None
        if self.allow_self_signed or self.insecure:
            # The self-signed check happens after the handshake (is_self_signed):
            # Python's ssl has no per-error verify callback.
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cipher_list:
            _set_ciphers(ctx, self.cipher_list)
        if self.max_version is not None:
            ctx.maximum_version = self.max_version
        if self.cert_file:
            _load_cert_chain(ctx, self.cert_file, self.key_file)
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx


def _file_error(exc: OSError, *files: tuple[str, str | None]) -> OSError:
    """``exc``, raised while loading ``files`` ((what, path) pairs), naming the file.

    ``ssl`` names no file ("[Errno 2] No such file or directory") and a bad PEM is
    only "[SSL] PEM lib": with several files, nobody can tell which one is wrong.
    The class and errno are kept, so ``except FileNotFoundError`` still works.
    """
    named = [(what, path) for what, path in files if path]
    if isinstance(exc, ssl.SSLError):
        names = " with ".join(f"{what} {path!r}" for what, path in named)
        why = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", describe_ssl_error(exc))  # a C line number
        # (errno, text): an SSLError made from the text alone prints as a tuple.
        return ssl.SSLError(exc.errno, f"cannot load {names}: {why}")
    # The first file that is not a readable file is the culprit; else the first one.
    unreadable = [(w, p) for w, p in named if not (os.path.isfile(p) and os.access(p, os.R_OK))]
    what, path = (unreadable or named)[0]
    new = type(exc)(f"{what} {path!r}: {exc.strerror or exc}")
    new.errno = exc.errno
    return new


def _load_cert_chain(ctx: ssl.SSLContext, cert_file: str, key_file: str | None) -> None:
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except OSError as exc:
        raise _file_error(exc, ("certificate file", cert_file), ("key file", key_file)) from None


def _set_ciphers(ctx: ssl.SSLContext, cipher_list: str) -> None:
    try:
        ctx.set_ciphers(cipher_list)
    except ssl.SSLError as exc:
        # ssl's text is a bare tuple, "('No cipher can be selected.',)".
        why = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        raise ssl.SSLError(exc.errno, f"invalid cipher list {cipher_list!r}: {why}") from None


def describe_ssl_error(exc: BaseException) -> str:
    """The OpenSSL reason in words: 'certificate has expired', 'WRONG_VERSION_NUMBER'..."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason)
    return str(exc) or type(exc).__name__


def _der_items(data: bytes, pos: int, end: int) -> list[tuple[int, int, int]]:
    """(tag, start of content, end of content) of each DER item in data[pos:end]."""
    items = []
    while pos < end:
        tag = data[pos]
        length = data[pos + 1]
        pos += 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(data[pos : pos + n], "big")
            pos += n
        items.append((tag, pos, pos + length))
        pos += length
    return items


def is_self_signed(der: bytes) -> bool:
    """True if the certificate's issuer and subject names are the same (RFC 5280 §4.1).

    Only the names are compared; that is all lws's ``ALLOW_SELFSIGNED`` asks of the
    verify error it forgives (X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT).
    """
    try:
        ((_t, cs, ce),) = _der_items(der, 0, len(der))[:1]
        tbs_tag, ts, te = _der_items(der, cs, ce)[0]
        fields = _der_items(der, ts, te)
        if fields and fields[0][0] == 0xA0:  # [0] version
            fields = fields[1:]
        # serialNumber, signature, issuer, validity, subject
        issuer, subject = fields[2], fields[4]
    except (IndexError, ValueError):
        return False
    return bool(tbs_tag == 0x30 and der[issuer[1] : issuer[2]] == der[subject[1] : subject[2]])
