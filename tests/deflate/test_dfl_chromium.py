"""Headless Chromium (Playwright, /usr/bin/chromium) echoing through lwsbridge-test-echo
with permessage-deflate negotiated (Chromium offers it by default)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.peers

ECHO_JS = """
async ([url, sizes]) => {
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const inbox = [];
  let wake = null;
  ws.onmessage = (e) => { inbox.push(e.data); if (wake) { wake(); wake = null; } };
  await new Promise((ok, bad) => { ws.onopen = ok; ws.onerror = () => bad("ws error"); });
  const next = async () => {
    while (!inbox.length) await new Promise((ok) => { wake = ok; });
    return inbox.shift();
  };
  const words = ["deflate", "window", "frame", "chromium", "lwsbridge", "é", "€", "😀", " "];
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
  const results = [];
  for (const n of sizes) {
    let parts = [], len = 0;
    while (len < n) {
      const w = words[Math.floor(rnd() * words.length)];
      parts.push(w);
      len += w.length;
    }
    const text = parts.join("").slice(0, n);
    ws.send(text);
    const t = await next();
    const bin = new Uint8Array(n);
    for (let i = 0; i < n; i++) bin[i] = rnd() < 0.5 ? (i & 0x3f) : Math.floor(rnd() * 256);
    ws.send(bin);
    const b = new Uint8Array(await next());
    let same = b.length === n;
    for (let i = 0; same && i < n; i++) same = b[i] === bin[i];
    results.push([n, typeof t === "string" && t === text, same]);
  }
  const ext = ws.extensions;
  ws.close(1000);
  return {ext, results};
}
"""

SIZES = [0, 1, 125, 126, 4096, 65535, 65536, 262145, 1 << 20]


def test_chromium_echo_with_deflate(chromium: Any, echo: Any) -> None:
    ctx = chromium.new_context()
    try:
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        page.goto(echo.http_url, wait_until="load")
        out = page.evaluate(ECHO_JS, [echo.ws_url, SIZES])
    finally:
        ctx.close()
    print(f"\nChromium ws.extensions: {out['ext']!r}")
    assert "permessage-deflate" in out["ext"], out["ext"]
    assert out["results"] == [[n, True, True] for n in SIZES], out["results"]
    echo.assert_alive()
