"""Logging the lws way (level bits, an ``emit(level, line)`` sink), carried by stdlib ``logging``.

lws names beside ours::

    lws_set_log_level(levels, emit)  ->  set_log_level(levels, emit=None)
    lwsl_err/warn/notice/info/debug   ->  lwsl_err/warn/notice/info/debug(fmt, *args)
    lwsl_parser/header/ext/client/latency -> the same names
    lwsl_emit_stderr                  ->  emit_stderr(level, line)   (the default)
    lwsl_emit_syslog                  ->  emit_syslog(level, line)
    LLL_ERR ... LLL_LATENCY           ->  the same names, the same bit values

How it fits together:

* Every record, from the library and from ``lwsl_*``, goes through the stdlib logger
  ``logging.getLogger("lwsbridge")`` (exported as :data:`logger`). lws's levels map to
  logging levels: ERR -> ERROR, WARN -> WARNING, NOTICE -> :data:`NOTICE` (25, registered
  as "NOTICE"), INFO -> INFO, DEBUG -> DEBUG, and PARSER/HEADER/EXT/CLIENT/LATENCY -> 9..5
  (registered under those names). ``propagate`` is left alone (True), so the host
  application's own handlers, and pytest's ``caplog``, see the records.
* The lws-style output is one ``logging.Handler`` attached to that logger; it hands
  ``(level bit, message)`` to the current emitter. ``set_log_level(levels, emit)`` sets
  the enabled bits, sets the logger's level from them and, if ``emit`` is given, replaces
  the emitter (``emit=None`` keeps the current one). Err, warn and notice are on by
  default, as in lws.
* **Nothing prints twice**: the stock stderr emitter (:func:`emit_stderr`) steps aside for
  any record that a handler of the host's logging setup will take (the root logger's
  handlers, e.g. after ``logging.basicConfig()``, or a handler the host put on
  "lwsbridge"): then the host's handlers print it, once, in the host's format. With no
  such handler, it prints lws-style lines to stderr, like lws. Any other emitter (syslog,
  your function) is always called: you asked for that destination.
  :func:`use_logging_only` removes the lws emitter altogether, leaving plain ``logging``.
* The bits decide what is emitted. Records whose bit is off are dropped by a filter on the
  logger, so non-contiguous masks (say ERR|DEBUG) behave as in lws. If the host sets the
  "lwsbridge" logger's level itself (``logger.setLevel``, ``caplog.set_level``), logging
  takes over for the library's records until the next ``set_log_level``; the ``lwsl_*``
  functions always follow the bits.
* :func:`set_log_tag` prefixes every line (emitters and :class:`LwsFormatter`) with a
  tag such as ``[w1]``: the worker index under :mod:`lwsbridge.workers`.
* Disabled levels cost one integer test: the ``lwsl_*`` functions check the enabled bits
  (a module-level int) before anything is formatted or a record is built.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

__all__ = [
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
    "Emitter",
    "LwsFormatter",
    "emit_stderr",
    "emit_syslog",
    "format_line",
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

logging.addLevelName(NOTICE, "NOTICE")
for _lvl, _name in (
    (_PARSER, "PARSER"),
    (_HEADER, "HEADER"),
    (_EXT, "EXT"),
    (_CLIENT, "CLIENT"),
    (_LATENCY, "LATENCY"),
):
    logging.addLevelName(_lvl, _name)

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
            if h is not mine and record.levelno >= h.level:
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
    global _enabled, _emit, _set_level
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


def use_logging_only() -> None:
    """Drop the lws emitter: records go only to the host's ``logging`` handlers."""
    global _emit
    _emit = None
    logger.removeHandler(_handler)


def get_log_level() -> int:
    """The enabled ``LLL_*`` bits."""
    return _enabled


def get_emitter() -> Emitter | None:
    """The current emitter (``None`` after :func:`use_logging_only`)."""
    return _emit


# Each checks the bit before anything else: a disabled level formats nothing.
def lwsl_err(fmt: str, *args: object) -> None:
    if _enabled & LLL_ERR:
        logger.log(logging.ERROR, fmt, *args)


def lwsl_warn(fmt: str, *args: object) -> None:
    if _enabled & LLL_WARN:
        logger.log(logging.WARNING, fmt, *args)


def lwsl_notice(fmt: str, *args: object) -> None:
    if _enabled & LLL_NOTICE:
        logger.log(NOTICE, fmt, *args)


def lwsl_info(fmt: str, *args: object) -> None:
    if _enabled & LLL_INFO:
        logger.log(logging.INFO, fmt, *args)


def lwsl_debug(fmt: str, *args: object) -> None:
    if _enabled & LLL_DEBUG:
        logger.log(logging.DEBUG, fmt, *args)


def lwsl_parser(fmt: str, *args: object) -> None:
    if _enabled & LLL_PARSER:
        logger.log(_PARSER, fmt, *args)


def lwsl_header(fmt: str, *args: object) -> None:
    if _enabled & LLL_HEADER:
        logger.log(_HEADER, fmt, *args)


def lwsl_ext(fmt: str, *args: object) -> None:
    if _enabled & LLL_EXT:
        logger.log(_EXT, fmt, *args)


def lwsl_client(fmt: str, *args: object) -> None:
    if _enabled & LLL_CLIENT:
        logger.log(_CLIENT, fmt, *args)


def lwsl_latency(fmt: str, *args: object) -> None:
    if _enabled & LLL_LATENCY:
        logger.log(_LATENCY, fmt, *args)


set_log_level(_DEFAULT_LEVELS)
