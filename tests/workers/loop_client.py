"""Connect, echo, close, in a loop, until a stop file exists; then print the counts (JSON).

Run by tests/workers (inside a network namespace with ``ip netns exec``).  Kinds:
``served`` (the echo came back), ``redirected`` (close 1001 or HTTP 503 from a
draining worker: go elsewhere), ``refused`` (ECONNREFUSED: nobody listening) and
``other`` (anything else, e.g. a reset).
"""

from __future__ import annotations

import errno
import json
import os
import sys
import threading

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


def one(url: str) -> str:
    try:
        with connect(url, open_timeout=20, close_timeout=2) as ws:
            ws.send("ping")
            if ws.recv(timeout=20) != "ping":
                return "other"
        return "served"
    except ConnectionClosed as exc:
        return "redirected" if exc.rcvd is not None and exc.rcvd.code == 1001 else "other"
    except InvalidStatus as exc:
        return "redirected" if exc.response.status_code == 503 else "other"
    except OSError as exc:
        return "refused" if exc.errno == errno.ECONNREFUSED else "other"
    except Exception:
        return "other"


THREADS = 4  # connections in flight at once, so that some are mid-handshake at a drain


def main() -> None:
    url, stop_file = sys.argv[1], sys.argv[2]
    counts = {"served": 0, "redirected": 0, "refused": 0, "other": 0}
    lock = threading.Lock()
    up = threading.Event()

    def loop() -> None:
        while not os.path.exists(stop_file):
            kind = one(url)
            with lock:
                counts[kind] += 1
            if kind == "served" and not up.is_set():
                up.set()
                print("UP", flush=True)

    threads = [threading.Thread(target=loop) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
