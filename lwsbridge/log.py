"""Logging the lws way (level bits, an ``emit(level, line)`` sink), carried by stdlib ``logging``.

lws names beside ours::

    lws_set_log_level(levels, emit)  ->  set_log_level(levels, emit=None)
    lwsl_err/warn/notice/info/debug   ->  lwsl_err/warn/notice/info/debug(fmt, *args)
    lwsl_parser/header/ext/client/latency -> the same names
    lwsl_emit_stderr                  ->  emit_stderr(level, line)   (the default)
    lwsl_emit_syslog                  ->  emit_syslog(level, line)
    LLL_ERR ... LLL_LATENCY           ->  the same names, the same bit values

How it fits together:

* **Importing adds nothing global.** Like websockets and aiohttp, the library only logs
  to the stdlib logger ``logging.getLogger("lwsbridge")`` (exported as :data:`logger`),
  which carries one ``NullHandler`` and no level: a program that configures nothing
  sees nothing (not even ``logging``'s last-resort stderr output), and one that calls
  ``logging.basicConfig(level=logging.INFO)`` sees the library's lines in its own format.
  No level names are registered with ``logging.addLevelName``: a filter on our own
  logger names our records' levels instead (``NOTICE``, ``PARSER`` ... in
  ``%(levelname)s``).
* **What the library logs.** At INFO: each accepted connection (peer), each handshake
  (path, subprotocol, extensions) and each close (code, reason, which side). At DEBUG:
  one summary per data frame in and out (opcode, length, fin). lws's extra bits carry
  the details: PARSER (how a frame was cut into RECEIVE pieces), HEADER (the handshake
  headers), EXT (extension offers and the one accepted), CLIENT (client connect steps),
  LATENCY (accept or connect to established, in ms). NOTICE/WARNING/ERROR are as before.
* **The lws way is opt-in and stays as lws has it.** :func:`set_log_level` (or the first
  enabled ``lwsl_*`` call, with lws's default bits ERR|WARN|NOTICE) turns it on: the
  bits decide what is emitted, the logger's level is set from them, and one handler
  hands ``(level bit, message)`` to the emitter (:func:`emit_stderr` by default, lws's
  stderr format). lws's levels map to logging levels: ERR -> ERROR, WARN -> WARNING,
  NOTICE -> :data:`NOTICE` (25), INFO -> INFO, DEBUG -> DEBUG, PARSER/HEADER/EXT/CLIENT/
  LATENCY -> 9..5. ``propagate`` is left alone (True), so the host application's own
  handlers, and pytest's ``caplog``, see the records. :func:`reset` goes back to the
  import-time state.
* **Nothing prints twice**: the stock stderr emitter steps aside for any record that a
  handler of the host's logging setup will take (the root logger's handlers, e.g. after
  ``logging.basicConfig()``, or a handler the host put on "lwsbridge"; a ``NullHandler``
  does not count): then the host's handlers print it, once, in the host's format. Any
  other emitter (syslog, your function) is always called: you asked for that
  destination. :func:`use_logging_only` removes the lws emitter altogether.
* The bits decide what is emitted. Records whose bit is off are dropped by a filter on the
  logger, so non-contiguous masks (say ERR|DEBUG) behave as in lws. If the host sets the
  "lwsbridge" logger's level itself (``logger.setLevel``, ``caplog.set_level``), logging
  takes over for the library's records until the next ``set_log_level``; the ``lwsl_*``
  functions always follow the bits.
* :func:`set_log_tag` prefixes every line (emitters and :class:`LwsFormatter`) with a
  tag such as ``[w1]``: the worker index under :mod:`lwsbridge.workers`.
* **Disabled levels cost nothing measurable.** The ``lwsl_*`` functions check the enabled
  bits (a module-level int) before anything is formatted. The per-frame summaries sit
  behind :data:`frames`, a module-level bool the library tests once per frame; it is
  recomputed by :func:`set_log_level`, :func:`use_logging_only`, :func:`reset`,
  :func:`refresh` and at every handshake, so a level the host changes through
  ``logging`` applies to frames from the next handshake on (call :func:`refresh` to
  apply it at once). Everything else logs at cold points (once per connection).
"""

from __future__ import annotations

import logging
import sys
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lwsbridge.core.events import DataReceived

__all__ = [
    "CLIENT",
    "EXT",
    "HEADER",
    "LATENCY",
    "LLL_CLIENT",
    "LLL_DEBUG",
    "LLL_ERR",
    "LLL_EXT",
    "LLL_HEADER",
    "LLL_INFO",
    "LLL_LATENCY",
    "LLL_NOTICE",
    "LLL_PARSER",
    "LLL_WARN",
    "NOTICE",
    "PARSER",
    "Emitter",
    "LwsFormatter",
    "emit_stderr",
    "emit_syslog",
    "format_line",
    "frames",
    "get_emitter",
    "get_log_level",
    "get_log_tag",
    "logger",
    "lwsl_client",
    "lwsl_debug",
    "lwsl_err",
    "lwsl_ext",
    "lwsl_header",
    "lwsl_info",
    "lwsl_latency",
    "lwsl_notice",
    "lwsl_parser",
    "lwsl_warn",
    "refresh",
    "reset",
    "set_log_level",
    "set_log_tag",
    "use_logging_only",
]

# lws's bits (lws-logs.h)
LLL_ERR = 1 << 0
LLL_WARN = 1 << 1
LLL_NOTICE = 1 << 2
LLL_INFO = 1 << 3
LLL_DEBUG = 1 << 4
LLL_PARSER = 1 << 5
LLL_HEADER = 1 << 6
LLL_EXT = 1 << 7
LLL_CLIENT = 1 << 8
LLL_LATENCY = 1 << 9

#: lws's NOTICE sits between INFO and WARNING
NOTICE = 25
_PARSER, _HEADER, _EXT, _CLIENT, _LATENCY = 9, 8, 7, 6, 5
#: the logging levels of lws's detail bits (for ``logger.log`` and ``logger.isEnabledFor``)
PARSER, HEADER, EXT, CLIENT, LATENCY = _PARSER, _HEADER, _EXT, _CLIENT, _LATENCY

# Our level names, given to our records only (logging.addLevelName would change every
# program's logging, which a library must not do).
_NAMES = {
    NOTICE: "NOTICE",
    _PARSER: "PARSER",
    _HEADER: "HEADER",
    _EXT: "EXT",
    _CLIENT: "CLIENT",
    _LATENCY: "LATENCY",
}

# bit -> (logging level, lws's letter)
_LEVELS: dict[int, tuple[int, str]] = {
    LLL_ERR: (logging.ERROR, "E"),
    LLL_WARN: (logging.WARNING, "W"),
    LLL_NOTICE: (NOTICE, "N"),
    LLL_INFO: (logging.INFO, "I"),
    LLL_DEBUG: (logging.DEBUG, "D"),
    LLL_PARSER: (_PARSER, "P"),
    LLL_HEADER: (_HEADER, "H"),
    LLL_EXT: (_EXT, "X"),
    LLL_CLIENT: (_CLIENT, "C"),
    LLL_LATENCY: (_LATENCY, "L"),
}
_DEFAULT_LEVELS = LLL_ERR | LLL_WARN | LLL_NOTICE

#: ``emit(level_bit, line)``: lws's ``void (*func)(int level, const char *line)``
Emitter = Callable[[int, str], None]

logger = logging.getLogger("lwsbridge")
# The one thing importing adds: without a handler anywhere, logging's last resort would
# print the library's warnings and errors on stderr of a program that asked for nothing.
logger.addHandler(logging.NullHandler())


def _name_level(record: logging.LogRecord) -> bool:
    name = _NAMES.get(record.levelno)
    if name is not None:
        record.levelname = name
    return True


logger.addFilter(_name_level)


def _bit_for(levelno: int) -> int:
    """The lws bit of a logging level (levels between ours round down to the next bit)."""
    if levelno >= logging.ERROR:
        return LLL_ERR
    if levelno >= logging.WARNING:
        return LLL_WARN
    if levelno >= NOTICE:
        return LLL_NOTICE
    if levelno >= logging.INFO:
        return LLL_INFO
    if levelno >= logging.DEBUG:
        return LLL_DEBUG
    if levelno >= _PARSER:
        return LLL_PARSER
    if levelno >= _HEADER:
        return LLL_HEADER
    if levelno >= _EXT:
        return LLL_EXT
    if levelno >= _CLIENT:
        return LLL_CLIENT
    return LLL_LATENCY


def format_line(level: int, line: str, when: float | None = None) -> str:
    """``[2026/11/26 21:22:24:6617] N: line``, lws's stderr format (no newline)."""
    if when is None:
        when = time.time()
    stamp = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(when))
    frac = int((when % 1) * 10000)
    letter = _LEVELS[level][1] if level in _LEVELS else "?"
    return f"[{stamp}:{frac:04d}] {letter}: {line}"


def emit_stderr(level: int, line: str) -> None:
    """lws's default emitter: a timestamped, lettered line on stderr."""
    sys.stderr.write(format_line(level, line) + "\n")
    sys.stderr.flush()


def emit_syslog(level: int, line: str) -> None:
    """lwsl_emit_syslog: ``syslog.syslog`` at the matching priority.

    The caller opens and closes the log (``syslog.openlog(ident, LOG_PID, LOG_DAEMON)``).
    """
    import syslog

    prio = {
        LLL_ERR: syslog.LOG_ERR,
        LLL_WARN: syslog.LOG_WARNING,
        LLL_NOTICE: syslog.LOG_NOTICE,
        LLL_INFO: syslog.LOG_INFO,
    }.get(level, syslog.LOG_DEBUG)
    syslog.syslog(prio, line)


class LwsFormatter(logging.Formatter):
    """lws's line format for a host's own ``logging`` handler."""

    def format(self, record: logging.LogRecord) -> str:
        return format_line(_bit_for(record.levelno), _message(self, record), record.created)


_tag = ""  # "[w1] " in worker 1 of lwsbridge.workers; "" otherwise


def set_log_tag(tag: str | None) -> None:
    """Put ``[tag]`` before every lws-style line of this process (None/"": nothing).

    :mod:`lwsbridge.workers` tags each worker's lines with its index (``[w1]``) so
    that the lines of processes sharing one stderr or syslog can be told apart.
    """
    global _tag
    _tag = f"[{tag}] " if tag else ""


def get_log_tag() -> str:
    """The tag set by :func:`set_log_tag` (without brackets; "" for none)."""
    return _tag[1:-2] if _tag else ""


def _message(fmt: logging.Formatter, record: logging.LogRecord) -> str:
    text = _tag + record.getMessage()
    if record.exc_info and not record.exc_text:
        record.exc_text = fmt.formatException(record.exc_info)
    if record.exc_text:
        text += "\n" + record.exc_text
    return text


_enabled = _DEFAULT_LEVELS
_emit: Emitter | None = emit_stderr
_set_level = logging.NOTSET  # the logger level set_log_level chose
_configured = False  # set_log_level (or an lwsl_* call) turned the lws way on

#: True when the per-frame summaries (DEBUG, PARSER) would be emitted: the one test the
#: library makes per frame.  See the module docstring for when it is recomputed.
frames = False


class _EmitHandler(logging.Handler):
    """Hands lwsbridge's records to the lws-style emitter."""

    _fmt = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        fn = _emit
        if fn is None or (fn is emit_stderr and _host_takes(record, self)):
            return
        try:
            fn(_bit_for(record.levelno), _message(self._fmt, record))
        except Exception:
            self.handleError(record)


def _host_takes(record: logging.LogRecord, mine: logging.Handler) -> bool:
    """Will a handler other than ours take ``record`` (the walk ``Logger.callHandlers`` does)?"""
    c: logging.Logger | None = logger
    while c is not None:
        for h in c.handlers:
            if h is not mine and record.levelno >= h.level and type(h) is not logging.NullHandler:
                return True
        if not c.propagate:
            return False
        c = c.parent
    return False


def _bits_filter(record: logging.LogRecord) -> bool:
    if logger.level != _set_level:  # the host set the level through logging: it decides
        return True
    return bool(_enabled & _bit_for(record.levelno))


_handler = _EmitHandler()


def set_log_level(levels: int, emit: Emitter | None = None) -> None:
    """lws_set_log_level: enable exactly the ``LLL_*`` bits in ``levels``.

    ``emit`` replaces the emitter; ``None`` keeps the current one (after
    :func:`use_logging_only`, that means none).
    """
    global _enabled, _emit, _set_level, _configured
    _configured = True
    _enabled = levels
    if emit is not None:
        _emit = emit
    enabled = [lvl for bit, (lvl, _) in _LEVELS.items() if levels & bit]
    _set_level = min(enabled) if enabled else logging.CRITICAL + 1
    logger.setLevel(_set_level)
    if _bits_filter not in logger.filters:
        logger.addFilter(_bits_filter)
    if _emit is None:
        logger.removeHandler(_handler)
    elif _handler not in logger.handlers:
        logger.addHandler(_handler)
    refresh()


def use_logging_only() -> None:
    """Drop the lws emitter: records go only to the host's ``logging`` handlers."""
    global _emit
    _emit = None
    logger.removeHandler(_handler)
    refresh()


def reset() -> None:
    """Back to the state after import: no lws emitter, no logger level, no bits filter.

    The library's records then go wherever the host's ``logging`` setup sends them
    (nowhere, if it has none); ``get_log_level()`` is lws's default again.
    """
    global _enabled, _emit, _set_level, _configured
    _configured = False
    _enabled, _emit, _set_level = _DEFAULT_LEVELS, emit_stderr, logging.NOTSET
    logger.removeHandler(_handler)
    logger.removeFilter(_bits_filter)
    logger.setLevel(logging.NOTSET)
    refresh()


def refresh() -> bool:
    """Recompute :data:`frames` from the logger's current level; returns it.

    The library calls it at every handshake; call it after changing the "lwsbridge"
    logger's level through ``logging`` to apply the change to open connections at once.
    """
    global frames
    frames = logger.isEnabledFor(logging.DEBUG)
    return frames


def frame_summary(conn: object, direction: str, opcode: str, length: int, fin: bool) -> None:
    """The DEBUG line of one frame (the library calls it only when :data:`frames`)."""
    logger.debug("%r %s %s len=%d fin=%d", conn, direction, opcode, length, fin)


def piece_detail(conn: object, first: bool, final: bool, remaining: int) -> None:
    """The PARSER line of one received piece: how the parser cut the message."""
    logger.log(_PARSER, "%r rx piece first=%d final=%d remaining=%d", conn, first, final, remaining)


def rx_piece(conn: object, ev: DataReceived) -> None:
    """DEBUG (and PARSER) lines of one received data piece; called only when :data:`frames`."""
    opcode = ("BINARY" if ev.is_binary else "TEXT") if ev.is_first else "CONT"
    logger.debug("%r rx %s len=%d fin=%d", conn, opcode, len(ev.data), ev.frame_final)
    piece_detail(conn, ev.is_first, ev.is_final, ev.remaining)


def tx_frame(conn: object, kind: object, n: int, fin: bool) -> None:
    """DEBUG line of one frame written; called only when :data:`frames`."""
    logger.debug("%r tx %s len=%d fin=%d", conn, getattr(kind, "name", kind), n, fin)


def accepted(conn: object, peer: object) -> None:
    """INFO: a connection was accepted (once per connection)."""
    # One level test for both: LATENCY sits below INFO, so with INFO off it is off too
    # (isEnabledFor is monotonic in the level).  Two calls fewer per connection.
    if logger.isEnabledFor(logging.INFO):
        mark_start(conn)
        logger.info("%r accepted from %s", conn, peer)


def connecting(conn: object, url: str) -> None:
    """CLIENT: a client connection begins (once per connection)."""
    mark_start(conn)
    logger.log(_CLIENT, "%r connecting to %s", conn, url)


def handshake(
    conn: object,
    path: str,
    subprotocol: str | None,
    offered: Sequence[Any] | None,
    extensions: Sequence[Any],
    headers: Iterable[tuple[bytes, bytes]],
) -> None:
    """INFO: the WebSocket handshake is done; HEADER, EXT and LATENCY details."""
    global frames
    # A level the host changed through logging applies from here on (refresh()'s job).
    if not logger.isEnabledFor(logging.INFO):
        # And so are DEBUG and the detail levels, all below INFO: format nothing, and
        # frames is False (what refresh() would find, without its level test).
        frames = False
        return
    refresh()
    ext = ", ".join(e.serialize() for e in extensions) or "none"
    logger.info("%r handshake %s subprotocol=%s extensions=%s", conn, path, subprotocol, ext)
    if logger.isEnabledFor(_HEADER):
        for name, value in headers:
            logger.log(
                _HEADER, "%r header %s: %s", conn, name.decode("latin-1"), value.decode("latin-1")
            )
    if logger.isEnabledFor(_EXT):
        if offered is None:  # client role: the server's answer is all there is
            logger.log(_EXT, "%r extensions in use: %s", conn, ext)
        else:
            offers = ", ".join(o.serialize() for o in offered) or "none"
            logger.log(_EXT, "%r extensions offered: %s; in use: %s", conn, offers, ext)
    log_latency(conn, "established")


def closed(conn: object, code: int, reason: str, local: bool, clean: bool) -> None:
    """INFO: a WebSocket connection closed (code, reason, which side began it)."""
    if logger.isEnabledFor(logging.INFO):  # logger.info's own test, one call level less
        logger.info(
            "%r closed code=%d reason=%r by=%s clean=%s",
            conn,
            code,
            reason,
            "local" if local else "peer",
            clean,
        )
    if _marked:  # the weak dict's pop is a Python call: only once something was marked
        _started.pop(conn, None)


def dropped(conn: object, why: str, peer: bool) -> None:
    """INFO: an open WebSocket connection ended without a close handshake."""
    logger.info(
        "%r closed code=1006 reason=%r by=%s clean=False", conn, why, "peer" if peer else "local"
    )
    if _marked:
        _started.pop(conn, None)


# When each connection started, for LATENCY (kept only while that bit is on).
_started: weakref.WeakKeyDictionary[object, float] = weakref.WeakKeyDictionary()
_marked = False  # something was put in _started since import (it may still hold it)


def mark_start(conn: object) -> None:
    """Note when ``conn`` was accepted or began connecting (cold: once per connection)."""
    global _marked
    if logger.isEnabledFor(_LATENCY):
        _marked = True
        _started[conn] = time.monotonic()


def log_latency(conn: object, what: str) -> None:
    """LATENCY: time from :func:`mark_start` to now, e.g. to the established handshake."""
    t0 = _started.pop(conn, None)
    if t0 is not None:
        logger.log(_LATENCY, "%r %s after %.3f ms", conn, what, (time.monotonic() - t0) * 1e3)


def get_log_level() -> int:
    """The enabled ``LLL_*`` bits."""
    return _enabled


def get_emitter() -> Emitter | None:
    """The current emitter (``None`` after :func:`use_logging_only`)."""
    return _emit


def _lwsl(level: int, fmt: str, args: tuple[object, ...]) -> None:
    # lws prints ERR|WARN|NOTICE on stderr without being asked: an application using the
    # lws API gets that on its first lwsl_* call (the library itself never calls these).
    if not _configured:
        set_log_level(_enabled)
    logger.log(level, fmt, *args)


# Each checks the bit before anything else: a disabled level formats nothing.
def lwsl_err(fmt: str, *args: object) -> None:
    if _enabled & LLL_ERR:
        _lwsl(logging.ERROR, fmt, args)


def lwsl_warn(fmt: str, *args: object) -> None:
    if _enabled & LLL_WARN:
        _lwsl(logging.WARNING, fmt, args)


def lwsl_notice(fmt: str, *args: object) -> None:
    if _enabled & LLL_NOTICE:
        _lwsl(NOTICE, fmt, args)


def lwsl_info(fmt: str, *args: object) -> None:
    if _enabled & LLL_INFO:
        _lwsl(logging.INFO, fmt, args)


def lwsl_debug(fmt: str, *args: object) -> None:
    if _enabled & LLL_DEBUG:
        _lwsl(logging.DEBUG, fmt, args)


def lwsl_parser(fmt: str, *args: object) -> None:
    if _enabled & LLL_PARSER:
        _lwsl(_PARSER, fmt, args)


def lwsl_header(fmt: str, *args: object) -> None:
    if _enabled & LLL_HEADER:
        _lwsl(_HEADER, fmt, args)


def lwsl_ext(fmt: str, *args: object) -> None:
    if _enabled & LLL_EXT:
        _lwsl(_EXT, fmt, args)


def lwsl_client(fmt: str, *args: object) -> None:
    if _enabled & LLL_CLIENT:
        _lwsl(_CLIENT, fmt, args)


def lwsl_latency(fmt: str, *args: object) -> None:
    if _enabled & LLL_LATENCY:
        _lwsl(_LATENCY, fmt, args)
