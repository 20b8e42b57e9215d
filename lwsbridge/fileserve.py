"""File serving (lws ``lws_serve_http_file`` and mounts): paths under one root, HTTP semantics.

What a static file server owes its users, as libwebsockets' mounts give it:

- the request path is percent-decoded (UTF-8) *before* the traversal check, so
  ``/a%20b.txt`` is found and ``/%2e%2e/secret`` is refused like ``/../secret``;
  ``..``, NUL bytes and symlinks leading out of the root are refused like a missing
  file; only regular files are served;
- a directory without its trailing slash is redirected (301) to ``/dir/``; with it,
  its ``index.html`` is served, typed like any other file;
- the type comes from the file name, and every text type carries ``charset=utf-8``;
- GET and HEAD only (405 with ``Allow`` otherwise); ``ETag`` / ``If-None-Match`` and
  ``Last-Modified`` / ``If-Modified-Since`` answer 304; one ``Range`` gives 206, an
  unsatisfiable one 416 (several ranges are answered with the whole file, which
  RFC 9110 §14.2 allows).

This module decides; the context sends the head and streams the file as the socket
drains, never reading it whole.
"""

from __future__ import annotations

import contextlib
import email.utils
import mimetypes
import os
import posixpath
import stat
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import unquote_to_bytes

__all__ = ["FileServer", "FileStream", "Lookup", "Plan", "content_type_for", "plan_response"]

#: text types that get a charset besides text/*
_TEXTUAL = frozenset(
    {"application/javascript", "application/json", "application/xml", "image/svg+xml"}
)


def content_type_for(name: str, given: str | None = None) -> str:
    """The Content-Type for a file name (or the one given), with a charset for text."""
    ctype = given or mimetypes.guess_type(name)[0] or "application/octet-stream"
    base = ctype.split(";", 1)[0].strip().lower()
    if (base.startswith("text/") or base in _TEXTUAL) and "charset" not in ctype.lower():
        ctype += "; charset=utf-8"
    return ctype


class FileStream:
    """An open file being sent: the part still to send, read chunk by chunk."""

    __slots__ = ("_f", "remaining", "size")

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self.size = size
        #: bytes of the response body not yet read
        self.remaining = size

    def select(self, offset: int, length: int) -> None:
        """Send only ``length`` bytes from ``offset`` (a Range)."""
        self._f.seek(offset)
        self.remaining = length

    def read(self, n: int) -> bytes:
        data = self._f.read(min(n, self.remaining))
        self.remaining -= len(data)
        return data

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._f.close()


@dataclass
class Lookup:
    """What a request path names: a file (``stream``), a redirect, or nothing (404)."""

    stream: FileStream | None = None
    name: str = ""
    mtime: float = 0.0
    etag: str = ""
    redirect: str | None = None


@dataclass
class Plan:
    """The response to send: status, head fields, and the part of the file (if any)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    #: (offset, length) of the file to stream after the head; None: no file body
    part: tuple[int, int] | None = None


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
        raw = path.split("?", 1)[0].split("#", 1)[0]
        try:
            rel = unquote_to_bytes(raw).decode("utf-8").lstrip("/")
        except UnicodeDecodeError:
            return None
        if "\x00" in rel or "\\" in rel:
            return None
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if any(p == ".." for p in parts):
            return None
        full = os.path.realpath(posixpath.join(root, *parts)) if parts else root
        if full != root and not full.startswith(root + os.sep):
            return None  # a symlink out of the root
        return full

    def lookup(self, path: str) -> Lookup:
        """Find and open what ``path`` names."""
        full = self.resolve(path)
        if full is None:
            return Lookup()
        if os.path.isdir(full):
            raw = path.split("?", 1)[0]
            if not raw.endswith("/"):
                query = path[len(raw) :]
                return Lookup(redirect=(raw or "/") + "/" + query)
            full = os.path.join(full, "index.html")
        try:
            f = open(full, "rb")  # noqa: SIM115 - closed when streaming ends
        except OSError:
            return Lookup()
        try:
            st = os.fstat(f.fileno())
        except OSError:
            f.close()
            return Lookup()
        if not stat.S_ISREG(st.st_mode):
            f.close()
            return Lookup()
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
        return Lookup(FileStream(f, st.st_size), os.path.basename(full), st.st_mtime, etag)


def _not_modified(found: Lookup, headers: dict[str, str]) -> bool:
    inm = headers.get("if-none-match")
    if inm is not None:
        # RFC 9110 §13.1.2: weak comparison; If-Modified-Since is then ignored
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or found.etag in tags
    ims = headers.get("if-modified-since")
    if ims is not None:
        with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
            since = email.utils.parsedate_to_datetime(ims).timestamp()
            return int(found.mtime) <= since
    return False


#: what _byte_range gives for a range that selects nothing (416)
_UNSATISFIABLE = (-1, -1)


def _byte_range(spec: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as (offset, length); None to ignore it; _UNSATISFIABLE."""
    unit, _, ranges = spec.partition("=")
    if unit.strip().lower() != "bytes" or "," in ranges:
        return None  # other units, or several ranges: send the whole file
    first, dash, last = ranges.strip().partition("-")
    if not dash:
        return None
    try:
        if not first:  # the last N bytes
            n = int(last)
            if n <= 0 or not size:
                return _UNSATISFIABLE
            n = min(n, size)
            return (size - n, n)
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        return _UNSATISFIABLE  # RFC 9110 §14.1.2: the first position is past the end
    if start < 0 or end < start:
        return None
    end = min(end, size - 1)
    return (start, end - start + 1)


def plan_response(
    method: str, headers: dict[str, str], found: Lookup, content_type: str | None
) -> Plan:
    """The response to ``method`` for what the lookup found (headers: lower-case names)."""
    if method not in ("GET", "HEAD"):
        return Plan(405, [("Allow", "GET, HEAD")], b"<h1>405 Method Not Allowed</h1>")
    if found.redirect is not None:
        return Plan(301, [("Location", found.redirect)], b"<h1>301 Moved Permanently</h1>")
    stream = found.stream
    if stream is None:
        return Plan(404, [], b"<h1>404 Not Found</h1>")
    size = stream.size
    fields = [
        ("Content-Type", content_type_for(found.name, content_type)),
        ("Last-Modified", email.utils.formatdate(found.mtime, usegmt=True)),
        ("ETag", found.etag),
        ("Accept-Ranges", "bytes"),
    ]
    if _not_modified(found, headers):
        # RFC 9110 §15.4.5: no content; a Content-Length, if any, is the 200's
        return Plan(304, [*fields[1:3], ("Content-Length", str(size))])
    status, part = 200, (0, size)
    spec = headers.get("range")
    if_range = headers.get("if-range")
    if spec is not None and (if_range is None or if_range.strip() == found.etag):
        got = _byte_range(spec, size)
        if got == _UNSATISFIABLE:
            return Plan(416, [("Content-Range", f"bytes */{size}")], b"")
        if got is not None:
            status, part = 206, got
            fields.append(("Content-Range", f"bytes {got[0]}-{got[0] + got[1] - 1}/{size}"))
    fields.append(("Content-Length", str(part[1])))
    return Plan(status, fields, part=None if method == "HEAD" else part)
