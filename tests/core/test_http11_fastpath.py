"""parse_request_head's fast path (C and pure Python) against the regex fast path it
replaced: the same heads accepted with the same result, the same ones rejected with the
same status and reason (a differential test; hypothesis is derandomized in CI)."""

from __future__ import annotations

import re

import pytest
from helpers import HEAD_LINES, speedup_path
from hypothesis import given
from hypothesis import strategies as st

from lwsbridge.core import RemoteProtocolError, http11
from lwsbridge.core.events import Headers
from lwsbridge.core.http11 import parse_request_head

# The fast path as it was (lwsbridge 0.x up to the C/split parser): one fullmatch, one
# findall with a lazy value; a head outside it took the line-by-line path.
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE_CHARS = rb"[^\x00-\x08\x0a-\x1f\x7f]"
_OLD_HEAD = re.compile(rb"([^\r\n]+)\r?\n((?:" + _TOKEN + rb":" + _VALUE_CHARS + rb"*\r?\n)*)\r?\n")
_OLD_LINE = re.compile(rb"(" + _TOKEN + rb") ([^\x00-\x20\x7f]+) HTTP/(\d)\.(\d)")
_OLD_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _VALUE_CHARS + rb"*?)[ \t]*\r?\n")


def _outcome(parse, head: bytes) -> object:  # type: ignore[no-untyped-def]
    try:
        return parse(head)
    except RemoteProtocolError as exc:
        return (exc.status, exc.reason)


def _old_parse(head: bytes) -> object:
    fast = _OLD_HEAD.fullmatch(head)
    if fast is not None:
        m = _OLD_LINE.fullmatch(fast.group(1))
        if m is not None and m.group(3) == b"1":
            headers = Headers(_OLD_FIELD.findall(fast.group(2)))
            version = (1, int(m.group(4)))
            return m.group(1).decode("ascii"), m.group(2).decode("latin-1"), version, headers
    # A leading empty line always takes the line-by-line path, unchanged (RFC 9112 §2.2
    # has it ignored, so it gives that path's answer for ``head`` itself).
    return _outcome(parse_request_head, b"\r\n" + head)


@pytest.fixture(params=["c", "python"])
def path(request, monkeypatch):  # type: ignore[no-untyped-def]
    return speedup_path(request.param, monkeypatch, http11, "c_parse_head")


# Pieces of heads, well formed and not, and bytes that sit on the grammar's edges.
_PIECES = [*HEAD_LINES, b"GET / HTTP/1.", b"\r\n", b"\n", b"\r"]
_BYTES = (
    st.binary(max_size=6)
    .map(lambda b: bytes(c % 16 for c in b))
    .map(
        lambda b: b.translate(
            bytes.maketrans(bytes(range(16)), b" \t\r\n:\x00\x01\x7f\x80\xffaZ0/.1")
        )
    )
)
_HEADS = st.lists(st.one_of(st.sampled_from(_PIECES), _BYTES), max_size=12).map(b"".join)


# Hypothesis runs the examples of one test call with one fixture value, so the path is a
# parameter and the module's switch is set around each parse.
_C_PARSE = http11.c_parse_head
_PATHS = [
    pytest.param("c", marks=pytest.mark.skipif(_C_PARSE is None, reason="no C speedup")),
    "python",
]


def _new_parse(path: str, head: bytes) -> object:
    saved = http11.c_parse_head
    http11.c_parse_head = _C_PARSE if path == "c" else None
    try:
        return _outcome(parse_request_head, head)
    finally:
        http11.c_parse_head = saved


@pytest.mark.parametrize("path", _PATHS)
@given(head=_HEADS)
def test_fast_path_agrees_with_the_old_regexes(path: str, head: bytes) -> None:
    assert _new_parse(path, head) == _old_parse(head)


@pytest.mark.parametrize("path", _PATHS)
@given(
    fields=st.lists(
        st.tuples(st.sampled_from([b"Host", b"X-A", b"sec-websocket-key"]), _BYTES),
        max_size=6,
    ),
    ends=st.sampled_from([b"\r\n", b"\n"]),
)
def test_well_formed_heads_agree(path: str, fields: list[tuple[bytes, bytes]], ends: bytes) -> None:
    head = b"GET /x HTTP/1.1" + ends
    head += b"".join(name + b":" + value + ends for name, value in fields) + ends
    assert _new_parse(path, head) == _old_parse(head)


def test_fast_path_result(path: str) -> None:
    head = b"GET /chat?x=1 HTTP/1.1\r\nHost: a\r\nX-Pad: \t v a l \t \r\nX-Empty:\n\r\n"
    assert parse_request_head(bytearray(head)) == (
        "GET",
        "/chat?x=1",
        (1, 1),
        Headers([(b"host", b"a"), (b"x-pad", b"v a l"), (b"x-empty", b"")]),
    )
