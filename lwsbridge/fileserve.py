"""File serving (lws ``lws_serve_http_file``): paths under one root, opened safely, read in chunks.

``..``, NUL bytes and symlinks leading out of the root are refused like a missing
file; a directory means its ``index.html``; only regular files are served.  The
context streams an opened file as the socket drains, never reading it whole.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from typing import BinaryIO

__all__ = ["FileServer", "FileStream"]


class FileStream:
    """An open file being sent: its size and the next chunk."""

    __slots__ = ("_f", "size")

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self.size = size

    def read(self, n: int) -> bytes:
        return self._f.read(n)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._f.close()


class FileServer:
    __slots__ = ("root",)

    def __init__(self, root: str | None) -> None:
        #: the resource root, resolved (None: nothing is served)
        self.root = os.path.realpath(root) if root else None

    def resolve(self, path: str) -> str | None:
        """The real path under the root for a request path, or None when refused."""
        root = self.root
        if root is None:
            return None
        rel = path.split("?", 1)[0].lstrip("/")
        if "\x00" in rel:
            return None
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if any(p == ".." for p in parts):
            return None
        full = os.path.realpath(posixpath.join(root, *parts)) if parts else root
        if full != root and not full.startswith(root + os.sep):
            return None  # a symlink out of the root
        if os.path.isdir(full):
            full = os.path.join(full, "index.html")
        return full

    def open(self, path: str) -> FileStream | None:
        """The file for a request path, opened; None when missing or refused (a 404)."""
        full = self.resolve(path)
        if full is None:
            return None
        try:
            f = open(full, "rb")  # noqa: SIM115 - closed when streaming ends
        except OSError:
            return None
        try:
            st = os.fstat(f.fileno())
        except OSError:
            f.close()
            return None
        if not stat.S_ISREG(st.st_mode):
            f.close()
            return None
        return FileStream(f, st.st_size)
