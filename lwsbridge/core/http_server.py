"""The server side of HTTP/1.1 on one connection (RFC 9112): requests in, responses out.

Reads request heads (a WebSocket upgrade or a plain request) and request bodies from
the receive buffer, builds response heads, and keeps what keep-alive needs between
requests.  It raises :class:`RemoteProtocolError` with the HTTP status to answer for a
bad request and :class:`LocalProtocolError` for a response the caller may not send
now; the connection owns the state machine and turns the results into events.
"""

from __future__ import annotations

from lwsbridge.core.buffer import ReceiveBuffer
from lwsbridge.core.errors import LocalProtocolError, RemoteProtocolError
from lwsbridge.core.events import HTTPBody, HTTPRequest, UpgradeRequest
from lwsbridge.core.handshake import HeaderList, upgrade_lists_websocket, validate_upgrade
from lwsbridge.core.http11 import REASONS, build_head, parse_request_head

__all__ = ["ServerExchange", "check_request_start"]

# RFC 9110 §5.6.2 tchar: what a request line's method must start with.
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def check_request_start(data: bytes | bytearray) -> None:
    """Reject at the first byte what cannot be an HTTP request (not at the timeout)."""
    for b in data[:3]:
        if b in (0x0D, 0x0A):
            continue  # RFC 9112 §2.2: empty lines before the request line are allowed
        if b == 0x16:
            raise RemoteProtocolError("TLS handshake on a plain (non-TLS) port", status=400)
        if b not in _TCHAR:
            raise RemoteProtocolError(f"not an HTTP request (first byte {b:#04x})", status=400)
        return


class ServerExchange:
    """One request/response exchange after another on a server connection.

    :meth:`read_head` turns a complete head into an :class:`UpgradeRequest` or an
    :class:`HTTPRequest`; for the latter, :meth:`read_body` hands out the declared
    body (``Content-Length``) as :class:`HTTPBody` pieces, and :meth:`response_head`
    / :meth:`end_response` frame the answer.  ``end_response`` says whether the
    connection stays open for another request (keep-alive, RFC 9112 §9.3).
    """

    __slots__ = ("_body_remaining", "_keep_alive", "_responding")

    def __init__(self) -> None:
        self._keep_alive = False
        self._body_remaining = 0  # request body bytes still to come
        self._responding = False  # a response head went out, its body may follow

    @property
    def body_remaining(self) -> int:
        return self._body_remaining

    @property
    def responding(self) -> bool:
        """A response head went out and its body is not finished."""
        return self._responding

    def read_head(
        self, buf: ReceiveBuffer, max_head_size: int
    ) -> UpgradeRequest | HTTPRequest | None:
        """The next request head from ``buf`` (consumed), or None until it is complete."""
        end = buf.find_head_end()
        if end < 0:
            if len(buf) > max_head_size:
                raise RemoteProtocolError(
                    f"request head larger than {max_head_size} bytes", status=431
                )
            check_request_start(buf.data)
            return None
        if end > max_head_size:
            raise RemoteProtocolError(f"request head larger than {max_head_size} bytes", status=431)
        method, target, version, headers = parse_request_head(buf.consume(end))
        # One pass for the fields every request is asked about (it runs per connection):
        # the answers of ``name in headers`` and is_websocket_upgrade(headers).
        has_te = has_length = False
        upgrade: list[bytes] = []
        for name, value in headers.fields:
            if name == b"upgrade":
                upgrade.append(value)
            elif name == b"transfer-encoding":
                has_te = True
            elif name == b"content-length":
                has_length = True
        if has_te and has_length:
            # RFC 9112 §6.1/§6.3: the framing is ambiguous, the request-smuggling vector
            # (a proxy in front and this server would disagree on where the body ends).
            # 400, and the reject closes the connection as §6.1 requires -- upgrade or not.
            raise RemoteProtocolError(
                "request has both Content-Length and Transfer-Encoding (RFC 9112 §6.1)",
                status=400,
            )
        if upgrade and upgrade_lists_websocket(upgrade):
            key, protocols, extensions = validate_upgrade(method, version, headers)
            return UpgradeRequest(target, headers, key, protocols, extensions)
        # A plain HTTP request (RFC 9112 §9.3: 1.1 is persistent unless "close").
        conn_tokens = [t.lower() for t in headers.get_list(b"connection")]
        keep_alive = (
            b"close" not in conn_tokens if version >= (1, 1) else b"keep-alive" in conn_tokens
        )
        if has_te:
            codings = [c.lower() for c in headers.get_list(b"transfer-encoding")]
            if version < (1, 1) or not codings or codings[-1] != b"chunked":
                # §6.3: the body length cannot be determined (HTTP/1.0 has no transfer
                # codings, §6.1; without chunked last the body runs to the close).
                raise RemoteProtocolError(
                    "Transfer-Encoding without chunked as the final coding (RFC 9112 §6.3)",
                    status=400,
                )
            raise RemoteProtocolError("chunked request bodies are not supported", status=501)
        lengths = headers.get_all(b"content-length")
        length = 0
        if lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit():
                raise RemoteProtocolError("invalid Content-Length", status=400)
            length = int(lengths[0])
        self._keep_alive = keep_alive
        self._body_remaining = length
        return HTTPRequest(method, target, headers, keep_alive, length)

    def read_body(self, buf: ReceiveBuffer) -> HTTPBody | None:
        """The request body bytes in ``buf`` (consumed), None if there are none."""
        take = min(len(buf), self._body_remaining)
        if not take:
            return None
        self._body_remaining -= take
        return HTTPBody(buf.consume(take), self._body_remaining == 0)

    def response_head(
        self,
        status: int,
        headers: HeaderList,
        body: bytes,
        end: bool,
        reason: str | None,
    ) -> bytes:
        """The head answering the current request; ``Content-Length`` and ``Connection``
        are added when the caller left them out and the exchange needs them."""
        if self._responding:
            raise LocalProtocolError("no HTTP request is waiting for a response")
        fields = list(headers)
        names = {
            (n.lower() if isinstance(n, str) else n.decode("latin-1").lower()) for n, _ in fields
        }
        if end and "content-length" not in names:
            fields.append(("Content-Length", str(len(body))))
        if not self._keep_alive and "connection" not in names:
            fields.append(("Connection", "close"))
        phrase = reason if reason is not None else REASONS.get(status, "")
        try:
            head = build_head(f"HTTP/1.1 {status} {phrase}", fields)
        except ValueError as exc:
            raise LocalProtocolError(str(exc)) from None
        self._responding = True
        return head

    def end_response(self) -> bool:
        """The response is complete: True if the connection waits for another request."""
        self._responding = False
        return self._keep_alive and not self._body_remaining
