"""Write the seed corpora into fuzz/corpus/<target>/ (run once; the output is committed).

Sources: what Chromium sent (fuzz/captured/, made with capture_chromium.py) and
Autobahn-style frames built here: text and binary of the three length encodings,
masked and unmasked, fragmented with control frames in between, pings and pongs,
close frames with valid and invalid codes and reasons, invalid UTF-8 (Autobahn
section 6), reserved bits and opcodes, and permessage-deflate messages (compressed
whole, fragmented, with and without context takeover).  Every seed is cut to its
target's max_len.
"""

from __future__ import annotations

import hashlib
import struct
import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from targets import (  # noqa: E402
    CHROMIUM_HEAD,
    KEY,
    MASK,
    TARGETS,
    response_101,
)

CAPTURED = HERE / "captured"


def frame(
    opcode: int, payload: bytes, *, masked: bool, fin: bool = True, rsv: int = 0, width: int = 0
) -> bytes:
    """One frame; ``width`` forces the 16- or 64-bit length form (0: minimal)."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | opcode
    m = 0x80 if masked else 0
    if width == 64 or n > 0xFFFF:
        head = struct.pack("!BBQ", b0, m | 127, n)
    elif width == 16 or n > 125:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BB", b0, m | n)
    if not masked:
        return head + payload
    return head + MASK + bytes(b ^ MASK[i & 3] for i, b in enumerate(payload))


def close(code: int | None, reason: bytes = b"", *, masked: bool) -> bytes:
    payload = b"" if code is None else struct.pack("!H", code) + reason
    return frame(8, payload, masked=masked)


def deflate(data: bytes, c: zlib._Compress | None = None) -> bytes:
    c = c or zlib.compressobj(1, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if out.endswith(b"\x00\x00\xff\xff") else out


# Autobahn section 6: invalid UTF-8 sequences (overlong, surrogates, beyond U+10FFFF,
# truncated, stray continuation bytes) and some valid edge cases.
BAD_UTF8 = [
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
    b"\xc0\xaf",
    b"\xe0\x80\xaf",
    b"\xf0\x80\x80\xaf",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xfe",
    b"\xff",
    b"\x80",
    b"\xbf",
    b"Hello\xc3",
    b"\xc3\x28",
]
GOOD_UTF8 = ["κόσμε", "\U0010ffff", "\ud7ff", "\ue000", "é ☃ 😀", "Hello-µ@ßöäüàá-UTF-8!!"]

CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
BAD_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1012, 1015, 1016, 2000, 2999, 5000, 65535]


def ws_streams(masked: bool) -> list[bytes]:
    """Autobahn-style streams of frames as one role receives them."""

    def f(op: int, p: bytes, **kw: object) -> bytes:
        return frame(op, p, masked=masked, **kw)  # type: ignore[arg-type]

    s: list[bytes] = []
    # 1.x: text and binary at each length encoding
    for n in (0, 1, 125, 126, 127, 200, 300):
        s.append(f(1, b"*" * n))
        s.append(f(2, bytes(range(256)) * (n // 256) + bytes(range(n % 256))))
    s.append(f(1, b"Hello", width=16))
    s.append(f(2, b"\xfe\xff", width=64))
    # 2.x: pings and pongs
    s += [f(9, b""), f(9, b"Hello, world!"), f(9, b"\x00\xff\xfe\xfd\xfc" * 25), f(10, b"pong")]
    s.append(f(9, b"*" * 126))  # too long for a control frame
    s.append(f(9, b"x", fin=False))  # fragmented control frame
    s.append(f(9, b"ping1") + f(9, b"ping2") + f(10, b"unsolicited") + f(1, b"after"))
    # 3.x: reserved bits
    for rsv in (0x40, 0x20, 0x10, 0x70):
        s.append(f(1, b"small", rsv=rsv))
    s.append(f(9, b"", rsv=0x40))
    # 4.x: reserved opcodes
    for op in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):
        s.append(f(op, b"x") + f(1, b"never seen"))
    # 5.x: fragmentation
    s.append(f(1, b"frag1", fin=False) + f(0, b"frag2", fin=False) + f(0, b"frag3"))
    s.append(f(1, b"fragment1", fin=False) + f(9, b"ping") + f(0, b"fragment2"))
    s.append(f(2, b"", fin=False) + f(0, b"") + f(0, b"x"))  # continuation after the end
    s.append(f(0, b"orphan continuation"))
    s.append(f(1, b"a", fin=False) + f(1, b"b"))  # new message inside one
    s.append(f(1, b"a", fin=False) + f(10, b"pong") + f(0, b"b", fin=False) + f(0, b"c"))
    s.append(f(1, b"", fin=False) + f(0, b"", fin=False) + f(0, b""))
    # 6.x: UTF-8
    for bad in BAD_UTF8:
        s.append(f(1, bad))
        s.append(f(1, bad[:1], fin=False) + f(0, bad[1:]))
    for good in GOOD_UTF8:
        enc = good.encode("utf-8")
        s.append(f(1, enc))
        s.append(
            b"".join(
                f(1 if i == 0 else 0, enc[i : i + 1], fin=i == len(enc) - 1)
                for i in range(len(enc))
            )
        )
    # 7.x: close
    s.append(close(None, masked=masked) + f(1, b"after close"))
    s.append(f(8, b"\x03"))  # 1-byte payload
    for code in CLOSE_CODES:
        s.append(close(code, b"reason", masked=masked))
    for code in BAD_CLOSE_CODES:
        s.append(close(code, masked=masked))
    s.append(close(1000, "Hello ☃".encode(), masked=masked))
    s.append(
        close(1000, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80", masked=masked)
    )
    s.append(close(1000, b"*" * 123, masked=masked))
    s.append(close(1000, b"*" * 124, masked=masked))  # 126 bytes: too long
    s.append(f(1, b"data") + close(1000, masked=masked) + f(9, b"late ping"))
    # 9.x-ish: a message near the configured limits, announced and then truncated
    s.append(f(2, b"\x00" * 900))
    s.append(struct.pack("!BBQ", 0x82, (0x80 if masked else 0) | 127, 1 << 40) + MASK)
    s.append(struct.pack("!BBQ", 0x82, (0x80 if masked else 0) | 127, 1 << 63) + MASK)
    # the wrong masking for this role
    s.append(frame(1, b"wrong masking", masked=not masked))
    return s


def deflate_streams(masked: bool) -> list[bytes]:
    """permessage-deflate messages (RFC 7692 §7.2.3 examples and more)."""

    def f(op: int, p: bytes, **kw: object) -> bytes:
        return frame(op, p, masked=masked, **kw)  # type: ignore[arg-type]

    s: list[bytes] = []
    s.append(f(1, bytes.fromhex("f248cdc9c90700"), rsv=0x40))  # §7.2.3.1 "Hello"
    s.append(f(1, bytes.fromhex("f248cd"), rsv=0x40, fin=False) + f(0, bytes.fromhex("c9c90700")))
    s.append(
        f(1, bytes.fromhex("f248cdc9c90700"), rsv=0x40)
        + f(1, bytes.fromhex("f200110000"), rsv=0x40)
    )  # §7.2.3.2: the second "Hello" refers to the first
    s.append(f(1, bytes.fromhex("f24805000000ffff"), rsv=0x40))  # §7.2.3.3 with a tail kept
    s.append(f(1, bytes.fromhex("0005000000ffff"), rsv=0x40))  # §7.2.3.4 stored block
    s.append(f(1, bytes.fromhex("f248cdc9c90700"), rsv=0x40) + b"trailing")
    s.append(f(1, bytes.fromhex("f348cdc9c90700") + b"after final", rsv=0x40))  # BFINAL + data
    s.append(f(1, b"not deflate at all", rsv=0x40))
    s.append(f(1, b"uncompressed in a deflate connection"))
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    s.append(b"".join(f(1, deflate(m, c), rsv=0x40) for m in (b"abc" * 10, b"abc" * 20, b"x")))
    s.append(f(2, deflate(b"\x00" * 16384), rsv=0x40))  # exactly the limit
    s.append(f(2, deflate(b"\x00" * 16385), rsv=0x40))  # one over
    s.append(f(2, deflate(b"\x00" * 1_000_000), rsv=0x40))  # a bomb
    s.append(f(1, deflate(b"\xff\xfe" * 40), rsv=0x40))  # inflates to bad UTF-8
    big = deflate(bytes(range(256)) * 8)
    s.append(f(2, big[:5], rsv=0x40, fin=False) + f(9, b"p") + f(0, big[5:]))
    s.append(f(1, deflate(b"x"), rsv=0x40, fin=False) + f(0, deflate(b"y"), rsv=0x40))
    s.append(f(1, deflate("é ☃".encode()), rsv=0x40) + close(1000, b"bye", masked=masked))
    return s


def http_heads() -> list[bytes]:
    """Request heads (first byte even) and response heads (odd) for the http_head target."""
    reqs = [
        CHROMIUM_HEAD,
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        b"GET /index.html HTTP/1.0\r\n\r\n",
        b"\r\nGET / HTTP/1.1\nHost: a\n\n",
        b"POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ]
    resps = [
        response_101(True),
        response_101(False),
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 404\r\n\r\n",
        b"HTTP/1.0 301 Moved Permanently\r\nLocation: /x\r\n\r\n",
        b"HTTP/1.1 101\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ]
    return [b"\x00" + r for r in reqs] + [b"\x01" + r for r in resps]


def server_requests() -> list[bytes]:
    """Whole client streams: a request head and what follows it."""
    firefox = (
        b"GET /chat HTTP/1.1\r\nHost: localhost:7681\r\n"
        b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
        b"Accept: */*\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n"
        b"Sec-WebSocket-Version: 13\r\nOrigin: http://localhost:7681\r\n"
        b"Sec-WebSocket-Protocol: dumb-increment-protocol\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        b"Sec-WebSocket-Key: " + KEY + b"\r\nConnection: keep-alive, Upgrade\r\n"
        b"Sec-Fetch-Dest: empty\r\nSec-Fetch-Mode: websocket\r\nSec-Fetch-Site: same-origin\r\n"
        b"Pragma: no-cache\r\nCache-Control: no-cache\r\nUpgrade: websocket\r\n\r\n"
    )
    plain = CHROMIUM_HEAD.replace(
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n", b""
    )
    reqs = [CHROMIUM_HEAD, firefox, plain]
    for name in ("chromium-plain-head.bin", "chromium-deflate-head.bin"):
        p = CAPTURED / name
        if p.exists():
            reqs.append(p.read_bytes())
    reqs += [
        CHROMIUM_HEAD + frame(1, b"hello", masked=True) + close(1000, b"bye", masked=True),
        CHROMIUM_HEAD + frame(1, deflate(b"hello"), masked=True, rsv=0x40),
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world",
        b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST /p HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        CHROMIUM_HEAD.replace(b"13", b"8"),
        CHROMIUM_HEAD.replace(KEY, b"short"),
        CHROMIUM_HEAD.replace(b"GET", b"POST"),
        CHROMIUM_HEAD.replace(
            b"permessage-deflate; client_max_window_bits",
            b"permessage-deflate; server_max_window_bits=10; "
            b"client_max_window_bits=9; server_no_context_takeover, x-webkit",
        ),
        CHROMIUM_HEAD.replace(b"client_max_window_bits", b'client_max_window_bits="16"'),
        b"GET / HTTP/1.1\r\n" + b"X-Long: " + b"a" * 1100 + b"\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ]
    return reqs


def client_responses() -> list[bytes]:
    resps = [
        response_101(True),
        response_101(False),
        response_101(False) + frame(1, b"hello", masked=False),
        response_101(True) + frame(1, bytes.fromhex("f248cdc9c90700"), masked=False, rsv=0x40),
        response_101(False).replace(ACCEPT_B, b"wrongwrongwrongwrongwrong="),
        response_101(False).replace(b"101 Switching Protocols", b"200 OK"),
        response_101(False).replace(b"Upgrade: websocket\r\n", b""),
        response_101(False)[:-2] + b"Sec-WebSocket-Protocol: chat\r\n\r\n",
        response_101(False)[:-2] + b"Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n\r\n",
        response_101(False)[:-2]
        + b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8; "
        b"client_max_window_bits=8; server_no_context_takeover\r\n\r\n",
        response_101(False)[:-2]
        + b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\n"
        b"Upgrade: WebSocket\nConnection: upgrade\n"
        b"Sec-WebSocket-Accept: " + ACCEPT_B + b"\n\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ]
    p = CAPTURED / "chromium-deflate-response.bin"
    if p.exists():
        resps.append(
            p.read_bytes().replace(b"Sec-WebSocket-Protocol: lws-mirror-protocol\r\n", b"")
        )
    return resps


def tls_inputs() -> list[bytes]:
    hello = bytes.fromhex("160301") + b"\x00\x05" + b"\x01\x00\x00\x01\x00"
    alert = bytes.fromhex("15030300020233")
    appdata = bytes.fromhex("1703030010") + bytes(16)
    ccs = bytes.fromhex("140303000101")
    http = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    out = []
    for mode in range(5):
        for g in (b"", hello, alert, appdata, ccs, http, appdata * 3, bytes(range(256))):
            out.append(bytes([mode]) + g)
    return out


def inflate_inputs() -> list[bytes]:
    def rec(payload: bytes, final: bool) -> bytes:
        out = b""
        while len(payload) > 127:
            out += bytes([127]) + payload[:127]
            payload = payload[127:]
        return out + bytes([len(payload) | (0x80 if final else 0)]) + payload

    hello = bytes.fromhex("f248cdc9c90700")
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    ctx = rec(deflate(b"abcabcabc" * 5, c), True) + rec(deflate(b"abcabcabc" * 6, c), True)
    bomb = deflate(b"\x00" * 200_000)
    small_window = zlib.compressobj(1, zlib.DEFLATED, -9)
    w9 = deflate(bytes(range(200)) * 3, small_window)
    out = []
    for sel in (0x00, 0x01, 0x0E, 0x10, 0x20, 0x30, 0x40, 0x80, 0xC0, 0x3F, 0x52):
        for body in (
            rec(hello, True),
            rec(hello[:3], False) + rec(hello[3:], True),
            ctx,
            rec(bomb, True),
            rec(w9, True),
            rec(bytes.fromhex("f348cdc9c90700") + b"junk", True),
            rec(b"\xff\xff\xff", True),
            rec(b"", True),
        ):
            out.append(bytes([sel]) + body)
    return out


ACCEPT_B = response_101(False).split(b"Sec-WebSocket-Accept: ")[1].split(b"\r\n")[0]


def captured_frames(name: str) -> list[bytes]:
    """The frames Chromium sent after its head, those that fit max_len each."""
    p = CAPTURED / name
    if not p.exists():
        return []
    data = p.read_bytes()
    frames, pos = [], 0
    while pos + 2 <= len(data):
        n = data[pos + 1] & 0x7F
        h = 2 + (2 if n == 126 else 8 if n == 127 else 0) + (4 if data[pos + 1] & 0x80 else 0)
        if n == 126:
            n = int.from_bytes(data[pos + 2 : pos + 4], "big")
        elif n == 127:
            n = int.from_bytes(data[pos + 2 : pos + 10], "big")
        frames.append(data[pos : pos + h + n])
        pos += h + n
    small = [f for f in frames if len(f) <= 1024]
    return [*small, b"".join(small)]


def main() -> int:
    corpora: dict[str, list[bytes]] = {
        "http_head": http_heads(),
        "handshake_server": server_requests(),
        "handshake_client": client_responses(),
        "frames_server": ws_streams(True) + captured_frames("chromium-plain-ws.bin"),
        "frames_client": ws_streams(False),
        "frames_server_deflate": ws_streams(True)
        + deflate_streams(True)
        + captured_frames("chromium-deflate-ws.bin"),
        "frames_client_deflate": ws_streams(False) + deflate_streams(False),
        "frame_reader_server": [b"\x00" + x for x in ws_streams(True)]
        + [bytes([sel]) + x for sel in (1, 3) for x in deflate_streams(True)],
        "frame_reader_client": [b"\x00" + x for x in ws_streams(False)]
        + [bytes([sel]) + x for sel in (1, 3) for x in deflate_streams(False)],
        "inflate": inflate_inputs(),
        "tls": tls_inputs(),
    }
    assert set(corpora) == set(TARGETS), set(corpora) ^ set(TARGETS)
    for name, seeds in corpora.items():
        d = HERE / "corpus" / name
        d.mkdir(parents=True, exist_ok=True)
        for old in d.iterdir():
            old.unlink()
        for seed in seeds:
            seed = seed[: TARGETS[name].max_len]
            (d / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
        print(f"{name}: {len(list(d.iterdir()))} seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
