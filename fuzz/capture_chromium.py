"""Record what a real Chromium sends: its WebSocket request head and its frames.

Not run by CI: the seed corpora in ``fuzz/corpus/`` were made with it, and it is kept
so they can be made again (``python fuzz/capture_chromium.py``; needs ``chromium``).
A raw socket server serves one page whose script opens a WebSocket, sends a few
messages and closes; the server answers the upgrade (with or without
permessage-deflate) and records every byte the browser sent.
"""

from __future__ import annotations

import base64
import hashlib
import pathlib
import socket
import subprocess
import sys
import threading

HERE = pathlib.Path(__file__).resolve().parent
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

PAGE = b"""<!doctype html><script>
const ws = new WebSocket("ws://" + location.host + "/chat", ["lws-mirror-protocol"]);
ws.binaryType = "arraybuffer";
ws.onopen = () => {
  ws.send("hello");
  ws.send("x".repeat(200));
  ws.send("caf\\u00e9 \\u2603 \\ud83d\\ude00");
  ws.send(new Uint8Array([0, 1, 2, 3, 255]));
  ws.send("y".repeat(70000));
  ws.close(1000, "bye");
};
</script>"""


def read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def serve(srv: socket.socket, deflate: bool, out: dict[str, bytes]) -> None:
    while "ws" not in out:
        conn, _ = srv.accept()
        head = read_head(conn)
        if b"Upgrade: websocket" not in head:
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                b"Content-Length: " + str(len(PAGE)).encode() + b"\r\n\r\n" + PAGE
            )
            conn.close()
            continue
        end = head.index(b"\r\n\r\n") + 4
        out["head"] = head[:end]
        key = next(
            ln.split(b":", 1)[1].strip()
            for ln in head.split(b"\r\n")
            if ln.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        resp = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n"
            b"Sec-WebSocket-Protocol: lws-mirror-protocol\r\n"
        )
        if deflate:
            resp += b"Sec-WebSocket-Extensions: permessage-deflate\r\n"
        conn.sendall(resp + b"\r\n")
        stream = head[end:]
        conn.settimeout(10)
        try:
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                stream += chunk
                if b"\x88" in stream and stream.rstrip().endswith(b"bye") is False:
                    pass
                # The close frame (opcode 8, masked) ends the browser's part.
                if len(stream) > 2 and (stream.find(b"\x88\x85") >= 0):
                    break
        except TimeoutError:
            pass
        out["ws"] = stream
        out["response"] = resp + b"\r\n"
        conn.close()


def capture(deflate: bool) -> dict[str, bytes]:
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    out: dict[str, bytes] = {}
    t = threading.Thread(target=serve, args=(srv, deflate, out), daemon=True)
    t.start()
    proc = subprocess.Popen(
        [
            "chromium",
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            f"http://127.0.0.1:{port}/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    t.join(30)
    proc.kill()
    proc.wait()
    srv.close()
    return out


def main() -> int:
    for deflate in (False, True):
        out = capture(deflate)
        if "ws" not in out:
            print("no capture", deflate, file=sys.stderr)
            return 1
        tag = "deflate" if deflate else "plain"
        (HERE / "captured").mkdir(exist_ok=True)
        for k, v in out.items():
            (HERE / "captured" / f"chromium-{tag}-{k}.bin").write_bytes(v)
        print(tag, {k: len(v) for k, v in out.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
