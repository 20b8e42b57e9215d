"""TLS as a sans-IO transport: ciphertext in, plaintext out, and back, over MemoryBIO.

A :class:`TLSTransport` never sees a socket.  The context feeds it what the socket
read (:meth:`TLSTransport.feed`), advances the handshake, reads plaintext for the
core, turns the core's output into records (:meth:`TLSTransport.encrypt`) and sends
what :meth:`TLSTransport.take_output` gives.  Failures raise :class:`TLSFailure`
with a readable reason.  So TLS runs on the same poll contract, on every loop.
"""

from __future__ import annotations

import contextlib
import ssl

from lwsbridge.tls import describe_ssl_error, is_self_signed

__all__ = ["TLSFailure", "TLSTransport"]


class TLSFailure(Exception):
    """The TLS layer failed; ``str()`` is the reason, ready for a log line."""


class TLSTransport:
    __slots__ = ("_bio_in", "_bio_out", "_obj", "_self_signed_only", "handshaking")

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        hostname: str | None = None,
        self_signed_only: bool = False,
    ) -> None:
        self._bio_in = ssl.MemoryBIO()
        self._bio_out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(
            self._bio_in, self._bio_out, server_side=server_side, server_hostname=hostname
        )
        #: True until the handshake has completed
        self.handshaking = True
        # a client with allow_self_signed: accept only a self-signed peer certificate
        self._self_signed_only = self_signed_only

    def feed(self, data: bytes | memoryview) -> None:
        """Ciphertext read from the socket."""
        self._bio_in.write(data)

    def handshake(self) -> bool:
        """Advance the handshake: True once complete; raises TLSFailure."""
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
            raise TLSFailure(f"TLS handshake failed: {describe_ssl_error(exc)}") from exc
        self.handshaking = False
        if self._self_signed_only:
            der = self._obj.getpeercert(binary_form=True)
            if not der or not is_self_signed(der):
                raise TLSFailure(
                    "TLS handshake failed: certificate verify failed: "
                    "unable to get local issuer certificate (and it is not self-signed)"
                )
        return True

    def read(self, size: int) -> bytes | None:
        """Up to ``size`` bytes of plaintext; b"" when none is ready; None at close_notify/EOF.

        Raises TLSFailure on a broken record.
        """
        try:
            data = self._obj.read(size)
        except ssl.SSLWantReadError:
            return b""
        except ssl.SSLZeroReturnError:
            return None
        except ssl.SSLError as exc:
            raise TLSFailure(f"TLS error: {describe_ssl_error(exc)}") from exc
        return data if data else None

    def has_input(self) -> bool:
        """Plaintext decrypted or records received but not yet read (forced service)."""
        return self._obj.pending() > 0 or self._bio_in.pending > 0

    def take_output(self) -> bytes:
        """Records to send (b"" when none)."""
        bio = self._bio_out
        return bio.read() if bio.pending else b""

    def encrypt(self, chunks: list[bytes]) -> list[bytes]:
        """Plaintext chunks (b"" = end of stream) to records; close_notify before the end."""
        obj, bio = self._obj, self._bio_out
        out: list[bytes] = []
        for c in chunks:
            if c:
                try:
                    obj.write(c)
                except ssl.SSLError:
                    continue  # the connection is failing; the end marker follows
            else:
                with contextlib.suppress(ssl.SSLError, OSError):
                    obj.unwrap()  # queues close_notify; the peer's answer is not awaited
                if bio.pending:
                    out.append(bio.read())
                out.append(b"")
                return out
        if bio.pending:
            out.append(bio.read())
        return out
