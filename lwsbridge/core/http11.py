"""HTTP/1.1 heads (RFC 9112): parse request and response heads, build response heads."""

from __future__ import annotations

import re
from collections.abc import Callable

from lwsbridge.core import mask as _mask_module
from lwsbridge.core.buffer import ReceiveBuffer
from lwsbridge.core.errors import RemoteProtocolError
from lwsbridge.core.events import Headers

__all__ = [
    "REASONS",
    "build_head",
    "build_response",
    "parse_request_head",
    "parse_response_head",
    "read_response_head",
]

# RFC 9110 §5.6.2: token = 1*tchar
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([^\x00-\x20\x7f]+) HTTP/(\d)\.(\d)")
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")
# Field line, RFC 9112 §5: no whitespace between name and colon; OWS around the value.
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(.*?)[ \t]*")
# Field values may hold HTAB, SP, VCHAR and obs-text (RFC 9110 §5.5); never CR, LF, NUL.
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# The fast path: a start line, then field lines that are all well formed, then the blank
# line and nothing after it, checked by one match and split by one findall instead of
# two regex calls per line.  Anything else (leading empty lines, a bad line, no blank
# line) takes the line-by-line path, which says what is wrong.
_VALUE_CHARS = rb"[^\x00-\x08\x0a-\x1f\x7f]"
_FAST_HEAD = re.compile(
    rb"([^\r\n]+)\r?\n((?:" + _TOKEN + rb":" + _VALUE_CHARS + rb"*\r?\n)*)\r?\n"
)

# The C fast path (None without the speedup; tests set it to None for the Python one):
# the same grammar as _FAST_HEAD + _REQUEST_LINE with major version 1, in one scan;
# (method, target, minor, [(name, value)...]) or None outside it.
_FastHead = tuple[str, str, int, list[tuple[bytes, bytes]]]
c_parse_head: Callable[[bytes | bytearray], _FastHead | None] | None = _mask_module.speedup(
    "parse_request_head_fast"
)

REASONS: dict[int, str] = {
    101: "Switching Protocols",
    200: "OK",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


def _split_lines(head: bytes | bytearray) -> list[bytes]:
    # RFC 9112 §2.2: a recipient MAY accept a bare LF as a line terminator.
    lines = bytes(head).split(b"\n")
    # The head ends with an empty line: drop the two empty items it leaves.
    while lines and lines[-1] in (b"", b"\r"):
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _parse_fields(lines: list[bytes]) -> Headers:
    fields: list[tuple[bytes, bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            # RFC 9112 §5.2: obs-fold is rejected rather than unfolded.
            raise RemoteProtocolError("obsolete line folding in header field", status=400)
        m = _FIELD.fullmatch(line)
        if m is None:
            raise RemoteProtocolError(f"malformed header field line {line[:60]!r}", status=400)
        value = m.group(2)
        if _BAD_VALUE.search(value):
            raise RemoteProtocolError(
                f"invalid character in header field {m.group(1)[:60]!r}", status=400
            )
        fields.append((m.group(1), value))
    return Headers(fields)


def _fast_head(head: bytes | bytearray) -> _FastHead | None:
    """The fast path in Python, as :data:`c_parse_head` answers: ``(method, target,
    minor, fields)`` for a head all in the regexes' grammar with HTTP/1.x, else None."""
    fast = _FAST_HEAD.fullmatch(head)
    if fast is None:
        return None
    m = _REQUEST_LINE.fullmatch(fast.group(1))
    if m is None or m.group(3) != b"1":
        return None
    # The field lines are known well formed (name, colon, value chars, no CR but the
    # one before LF): a split, not a regex that tries the value's end at every byte.
    # strip's \r is that line-ending CR.
    fields = []
    for line in fast.group(2).split(b"\n")[:-1]:
        name, _, value = line.partition(b":")
        fields.append((name, value.strip(b" \t\r")))
    return m.group(1).decode("ascii"), m.group(2).decode("latin-1"), int(m.group(4)), fields


def parse_request_head(head: bytes | bytearray) -> tuple[str, str, tuple[int, int], Headers]:
    """Parse a request head (request line + fields + blank line).

    Returns ``(method, target, (major, minor), headers)``; raises
    :class:`RemoteProtocolError` with ``status`` 400 (or 505) and a reason.
    """
    parsed = (c_parse_head or _fast_head)(head)
    if parsed is not None:
        method, target, minor, fields = parsed
        return method, target, (1, minor), Headers(fields)
    lines = _split_lines(head)
    # RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
    while lines and not lines[0]:
        lines.pop(0)
    if not lines:
        raise RemoteProtocolError("empty request", status=400)
    m = _REQUEST_LINE.fullmatch(lines[0])
    if m is None:
        raise RemoteProtocolError(f"malformed request line {lines[0][:80]!r}", status=400)
    version = (int(m.group(3)), int(m.group(4)))
    if version[0] != 1:
        raise RemoteProtocolError(f"unsupported HTTP version {version[0]}.{version[1]}", status=505)
    headers = _parse_fields(lines[1:])
    return m.group(1).decode("ascii"), m.group(2).decode("latin-1"), version, headers


def parse_response_head(head: bytes | bytearray) -> tuple[tuple[int, int], int, str, Headers]:
    """Parse a response head; returns ``((major, minor), status, reason, headers)``."""
    lines = _split_lines(head)
    if not lines:
        raise RemoteProtocolError("empty response", status=400)
    m = _STATUS_LINE.fullmatch(lines[0])
    if m is None:
        raise RemoteProtocolError(f"malformed status line {lines[0][:80]!r}", status=400)
    headers = _parse_fields(lines[1:])
    reason = (m.group(4) or b"").decode("latin-1")
    return (int(m.group(1)), int(m.group(2))), int(m.group(3)), reason, headers


def read_response_head(
    buf: ReceiveBuffer, max_head_size: int
) -> tuple[tuple[int, int], int, str, Headers] | None:
    """Client: the response head from ``buf`` (consumed, parsed), or None until complete."""
    end = buf.find_head_end()
    if end < 0:
        if len(buf) > max_head_size:
            raise RemoteProtocolError(f"response head larger than {max_head_size} bytes")
        # Fail at once on a peer that is not speaking HTTP, not at the timeout.
        start = bytes(buf.data[:5])
        if not b"HTTP/".startswith(start):
            raise RemoteProtocolError(f"response does not start with HTTP/: {start!r}")
        return None
    if end > max_head_size:
        raise RemoteProtocolError(f"response head larger than {max_head_size} bytes")
    return parse_response_head(buf.consume(end))


def _encode(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


def build_head(start_line: str, headers: list[tuple[str | bytes, str | bytes]]) -> bytes:
    """A head from a start line and fields; refuses CR/LF in fields (header injection)."""
    parts = [start_line.encode("latin-1")]
    for name, value in headers:
        n, v = _encode(name), _encode(value)
        if b"\r" in n or b"\n" in n or b":" in n or b"\r" in v or b"\n" in v:
            raise ValueError(f"CR, LF or ':' not allowed in header field {n!r}")
        parts.append(n + b": " + v)
    parts.append(b"\r\n")
    return b"\r\n".join(parts)


def build_response(
    status: int,
    headers: list[tuple[str | bytes, str | bytes]] | None = None,
    body: bytes | None = None,
    reason: str | None = None,
) -> bytes:
    """A complete HTTP/1.1 response: head, and ``Content-Length`` + body if ``body`` is given."""
    fields = list(headers or [])
    if body is not None:
        fields.append(("Content-Length", str(len(body))))
    phrase = reason if reason is not None else REASONS.get(status, "")
    head = build_head(f"HTTP/1.1 {status} {phrase}", fields)
    return head + body if body else head
