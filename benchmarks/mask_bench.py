"""Micro-benchmark of 1 MiB unmasking in the C speedup: ``apply_mask`` alone, the pooled
path (payload copied into a reused bytearray, then unmasked out into a new bytes) and the
FrameBuffer path (copied into the delivered bytes, unmasked in place).  Best of 7 x 200.

    python benchmarks/mask_bench.py [ROOT]

ROOT: a checkout whose built ``lwsbridge/core/_speedups*.so`` is measured (default: the
one this interpreter imports); a build without FrameBuffer prints only the first two.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable

if len(sys.argv) > 1:
    sys.path.insert(0, sys.argv[1])

from lwsbridge.core import _speedups

N = 1 << 20
SRC = os.urandom(N)
KEY = b"\x01\x02\x03\x04"
POOL = bytearray(N)


def mask_only() -> bytes:
    return _speedups.apply_mask(SRC, KEY)


def pooled() -> bytes:
    POOL[:] = SRC  # stands for the kernel's copy into the pooled buffer
    return _speedups.apply_mask(POOL, KEY)


def frame_buffer() -> bytes:
    fb = _speedups.FrameBuffer(N)
    with memoryview(fb) as view:
        view[:] = SRC  # stands for the kernel's copy (recv_into)
    return fb.take(KEY)


def best_us(fn: Callable[[], bytes]) -> float:
    for _ in range(30):
        fn()
    best = float("inf")
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(200):
            fn()
        best = min(best, (time.perf_counter() - t) / 200)
    return best * 1e6


cases = [("apply_mask 1 MiB", mask_only), ("pool copy + apply_mask", pooled)]
if hasattr(_speedups, "FrameBuffer"):
    assert frame_buffer() == pooled()
    cases.append(("FrameBuffer copy + take", frame_buffer))
for name, fn in cases:
    us = best_us(fn)
    print(f"{name:24s} {us:7.1f} us  {N / us:7.0f} MB/s")
