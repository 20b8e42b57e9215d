"""Headless Debian Chromium (Playwright, sync API) against lwsbridge's test apps.

Never runs ``playwright install``: the browser is ``/usr/bin/chromium``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = pytest.mark.peers

TIMEOUT_MS = 10_000
SCREENSHOT = "/tmp/lwsbridge-test-page.png"


def _open_test_page(browser_context: Any, url: str) -> Any:
    page = browser_context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url, wait_until="load")
    for status in ("#wsdi_statustd", "#wsm_statustd", "#wss_statustd"):
        page.wait_for_function(
            "sel => document.querySelector(sel).textContent === 'websocket connection opened'",
            arg=status,
        )
    return page


def test_chromium_test_page(chromium: Any, test_server: Any) -> None:
    ctx = chromium.new_context(viewport={"width": 800, "height": 700})
    try:
        page = _open_test_page(ctx, test_server.http_url)
        assert page.title() == "lwsbridge test server"

        # dumb-increment-protocol: the counter climbs (one number every 50 ms)
        page.wait_for_function("window.lastNumber !== null")
        first = page.evaluate("window.lastNumber")
        time.sleep(0.5)
        second = page.evaluate("window.lastNumber")
        assert second > first, f"counter did not increase: {first} -> {second}"
        assert page.text_content("#number") is not None
        page.wait_for_function("window.lastNumber >= 15")
        before = page.evaluate("window.lastNumber")

        # reset: the server restarts the count at 0
        page.click("#reset")
        page.wait_for_function("window.lastNumber < 5")
        after = page.evaluate("window.lastNumber")
        assert after < before, f"reset did not drop the counter: {before} -> {after}"

        # lws-mirror-protocol: a line drawn in one tab reaches the other one
        other = _open_test_page(ctx, test_server.http_url)
        count_before = int(other.text_content("#mirror_count") or "0")
        assert page.evaluate("window.drawMirror('#ff0000', 10, 20, 30, 40)") is True
        other.wait_for_function(
            "window.lastMirrorMessage !== null && "
            "window.lastMirrorMessage.includes('d #ff0000 10 20 30 40;')"
        )
        other.wait_for_function(
            "n => Number(document.getElementById('mirror_count').textContent) > n",
            arg=count_before,
        )
        # ... and back: the other tab draws, the first tab sees it
        assert other.evaluate("window.drawMirror('#0000ff', 50, 60, 70, 80)") is True
        page.wait_for_function(
            "window.lastMirrorMessage !== null && "
            "window.lastMirrorMessage.includes('d #0000ff 50 60 70 80;')"
        )

        page.screenshot(path=SCREENSHOT, full_page=True)  # for humans, not asserted
        for p in (page, other):
            assert p.text_content("#wsdi_statustd") == "websocket connection opened"
            assert p.text_content("#wsm_statustd") == "websocket connection opened"
    finally:
        ctx.close()
    test_server.assert_alive()


# Runs in the page: the clients the status panel lists, one per row.
PANEL_ROWS_JS = """() => Array.from(document.querySelectorAll('#status_clients tbody tr'))
  .map(tr => Array.from(tr.children).map(td => td.textContent))"""


def test_chromium_status_panel(chromium: Any, test_server: Any) -> None:
    ctx = chromium.new_context()
    try:
        first = _open_test_page(ctx, test_server.http_url)
        second = _open_test_page(ctx, test_server.http_url)
        # Both tabs' lws-status sockets in the first tab's panel: each tab has one.
        first.wait_for_function(
            "Array.from(document.querySelectorAll('#status_clients tbody tr'))"
            ".filter(tr => tr.children[1].textContent === 'lws-status').length >= 2"
        )
        rows = first.evaluate(PANEL_ROWS_JS)
        assert len(rows) >= 2
        by_protocol: dict[str, int] = {}
        for peer, protocol, agent, connected in rows:
            by_protocol[protocol] = by_protocol.get(protocol, 0) + 1
            assert peer.startswith("127.0.0.1:"), rows
            assert "Chrome" in agent, rows  # the browser's User-Agent, from the handshake
            assert connected.endswith("s"), rows
        assert by_protocol == {
            "dumb-increment-protocol": 2,
            "lws-mirror-protocol": 2,
            "lws-status": 2,
        }, rows
        assert first.text_content("#status_count") == "6"
        # the counter's traffic shows as a rate in the protocols table
        first.wait_for_function(
            "Array.from(document.querySelectorAll('#status_protocols tbody tr'))"
            ".some(tr => tr.children[0].textContent === 'dumb-increment-protocol' && "
            "Number(tr.children[4].textContent) > 0)"
        )
        # the second tab goes: the first tab's panel follows
        second.close()
        first.wait_for_function("document.getElementById('status_count').textContent === '3'")
        assert len(first.evaluate(PANEL_ROWS_JS)) == 3
    finally:
        ctx.close()
    test_server.assert_alive()


# Runs in the page: echo every payload over one WebSocket, compare in JS, return a summary.
ECHO_JS = r"""
async ({url, sizes, timeoutMs}) => {
  // text of exactly n UTF-8 bytes mixing 1-, 2-, 3- and 4-byte characters, so that
  // Chromium's fragmentation of large messages splits characters between frames
  function text(n) {
    const units = ["a", "é", "€", "😀", "Z", "ж", "語", "𝄞", "0"];
    const bytes = [1, 2, 3, 4, 1, 2, 3, 4, 1];
    const parts = [];
    let len = 0;
    for (let i = 0; len + bytes[i % 9] <= n; i++) {
      parts.push(units[i % 9]);
      len += bytes[i % 9];
    }
    for (; len < n; len++) parts.push("x");
    return parts.join("");
  }
  function binary(n) {  // xorshift32: every byte value, no short period
    const b = new Uint8Array(n);
    let x = 2463534242 >>> 0;
    for (let i = 0; i < n; i++) {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      b[i] = x & 0xff;
    }
    return b;
  }
  function equalBytes(a, b) {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  const utf8Length = (s) => new TextEncoder().encode(s).length;

  async function run() {
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    const inbox = [];
    let waiter = null;
    let closed = null;
    const wake = () => {
      if (waiter) { const w = waiter; waiter = null; w(); }
    };
    ws.onmessage = (ev) => { inbox.push(ev.data); wake(); };
    ws.onclose = (ev) => {
      closed = {code: ev.code, reason: ev.reason, clean: ev.wasClean};
      wake();
    };
    await new Promise((ok, fail) => {
      ws.onopen = ok;
      ws.onerror = () => fail(new Error("WebSocket error before open"));
    });
    async function next() {
      while (!inbox.length) {
        if (closed) throw new Error("closed: " + JSON.stringify(closed));
        await new Promise((r) => { waiter = r; });
      }
      return inbox.shift();
    }
    const results = [];
    for (const n of sizes) {
      const t = text(n);
      ws.send(t);
      const te = await next();
      results.push({kind: "text", size: n, utf8: utf8Length(t), chars: t.length,
                    ok: typeof te === "string" && te === t,
                    got: typeof te === "string" ? utf8Length(te) : -1});
      const b = binary(n);
      ws.send(b);
      const be = await next();
      results.push({kind: "binary", size: n,
                    ok: be instanceof ArrayBuffer && equalBytes(new Uint8Array(be), b),
                    got: be instanceof ArrayBuffer ? be.byteLength : -1});
    }
    const done = new Promise((r) => {
      if (closed) r(); else ws.addEventListener("close", () => r());
    });
    ws.close(1000, "bye");
    await done;
    return {results, close: closed};
  }

  // page.evaluate has no timeout of its own: bound the whole run here
  const deadline = new Promise((_, fail) => setTimeout(
    () => fail(new Error("echo run timed out after " + timeoutMs + " ms")), timeoutMs));
  return await Promise.race([deadline, run()]);
}
"""

SIZES = [0, 125, 126, 65535, 65536, 1 << 20]


def test_chromium_echo(chromium: Any, echo_server: Any) -> None:
    ctx = chromium.new_context()
    try:
        page = ctx.new_page()
        page.set_default_timeout(30_000)
        resp = page.goto(echo_server.http_url)
        assert resp is not None and resp.status == 200
        assert "lwsbridge echo server" in (page.text_content("h1") or "")
        args = {"url": echo_server.ws_url, "sizes": SIZES, "timeoutMs": 60_000}
        summary = page.evaluate(ECHO_JS, args)
    finally:
        ctx.close()
    results = summary["results"]
    assert len(results) == 2 * len(SIZES)
    for r in results:
        if r["kind"] == "text":
            assert r["utf8"] == r["size"], r
    bad = [r for r in results if not r["ok"]]
    assert not bad, f"echo mismatches: {bad}"
    assert summary["close"]["code"] == 1000, summary["close"]
    assert summary["close"]["clean"] is True, summary["close"]
    echo_server.assert_alive()
