# Stub for the optional C module lwsbridge/core/_speedups.c (built when a compiler is
# there; mask.py and utf8.py fall back to pure Python without it).
from typing_extensions import Buffer

class FrameBuffer:
    """``size`` bytes written through this object's (writable) buffer, then unmasked in
    place and handed over as an ordinary immutable ``bytes`` by :meth:`take`."""

    def __init__(self, size: int) -> None: ...
    def __len__(self) -> int: ...
    def __buffer__(self, flags: int, /) -> memoryview: ...
    def take(self, mask: Buffer, /) -> bytes:
        """Unmask in place with the 4-byte ``mask`` (b"": not masked) and return the bytes.

        BufferError while a view of this object is alive; ValueError when taken already.
        """

def apply_mask(data: Buffer, mask: Buffer, /) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (ValueError unless 4 bytes)."""

def utf8_check(data: Buffer, state: int, /) -> int:
    """Validate ``data`` as UTF-8 continuing from ``state``.

    Returns 0 when complete (between characters), -1 when invalid, else the
    mid-character state to pass with the next piece.  A negative ``state`` gives -1.
    """

def parse_request_head_fast(
    head: Buffer, /
) -> tuple[str, str, int, list[tuple[bytes, bytes]]] | None:
    """http11.parse_request_head's fast path: ``(method, target, minor, fields)`` for a
    head in its regexes' grammar with HTTP major version 1 (field values stripped of
    SP/HTAB, names as sent), else None."""
