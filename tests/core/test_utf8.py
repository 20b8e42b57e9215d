"""UTF-8 validation (RFC 6455 §8.1): the C and pure-Python paths agree with CPython's codec."""

from __future__ import annotations

import random

import pytest
from helpers import speedup_path

from lwsbridge.core import utf8


def _reference(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.fixture(params=["c", "python"])
def path(request, monkeypatch):  # type: ignore[no-untyped-def]
    return speedup_path(request.param, monkeypatch, utf8, "c_check")


EDGES = [
    b"",
    b"plain ascii",
    "héllo € 𝄞".encode(),
    b"\xc2\x80",  # U+0080
    b"\xdf\xbf",
    b"\xe0\xa0\x80",  # U+0800
    b"\xef\xbf\xbf",
    b"\xf0\x90\x80\x80",  # U+10000
    b"\xf4\x8f\xbf\xbf",  # U+10FFFF
    b"\xc0\x80",  # overlong
    b"\xc1\xbf",
    b"\xe0\x9f\xbf",  # overlong 3-byte
    b"\xed\xa0\x80",  # surrogate
    b"\xed\xbf\xbf",
    b"\xf0\x8f\xbf\xbf",  # overlong 4-byte
    b"\xf4\x90\x80\x80",  # over U+10FFFF
    b"\xf5\x80\x80\x80",
    b"\xff",
    b"\x80",
    b"\xe2\x82",  # truncated
]


@pytest.mark.parametrize("data", EDGES)
def test_whole_messages_match_the_codec(path: str, data: bytes) -> None:
    assert utf8.utf8_valid(data) is _reference(data)
    v = utf8.Utf8Validator()
    assert v.feed(data, final=True) is _reference(data)


def test_random_pieces_match_the_codec(path: str) -> None:
    rng = random.Random(1234)
    alphabet = [b"a", "é".encode(), "€".encode(), "𝄞".encode(), b"\xed\xa0\x80", b"\xff", b"\x80"]
    for _ in range(3000):
        data = b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 8)))
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, rng.randrange(0, 4))))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        v = utf8.Utf8Validator()
        ok = all(v.feed(p, final=(i == len(pieces) - 1)) for i, p in enumerate(pieces))
        assert ok is _reference(data), (data, pieces)


@pytest.mark.parametrize("bad", [b"\xed\xa0", b"\xf4\x90", b"\xe0\x80", b"\xc0", b"\xff"])
def test_fails_fast_on_an_invalid_prefix(path: str, bad: bytes) -> None:
    # The piece that holds the first impossible byte fails, before the message ends.
    v = utf8.Utf8Validator()
    assert v.feed(b"ok " + bad, final=False) is False


def test_a_character_split_across_pieces_is_pending(path: str) -> None:
    v = utf8.Utf8Validator()
    assert v.feed(b"\xf0\x9d", final=False)
    assert v.pending
    assert v.feed(b"\x84\x9e", final=True)
    assert not v.pending
    w = utf8.Utf8Validator()
    assert w.feed(b"\xe2\x82", final=False)
    assert not w.feed(b"", final=True)  # the message ended mid-character
