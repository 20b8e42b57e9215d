"""lws-style logging: level bits, emitters, syslog, and living with the host's ``logging``."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
import syslog
from collections.abc import Iterator

import pytest

import lwsbridge.log as lg
from lwsbridge.apps.common import setup_logging

LINE = re.compile(r"^\[\d{4}/\d\d/\d\d \d\d:\d\d:\d\d:\d{4}\] ([A-Z]): (.*)$")

ALL = (
    lg.LLL_ERR
    | lg.LLL_WARN
    | lg.LLL_NOTICE
    | lg.LLL_INFO
    | lg.LLL_DEBUG
    | lg.LLL_PARSER
    | lg.LLL_HEADER
    | lg.LLL_EXT
    | lg.LLL_CLIENT
    | lg.LLL_LATENCY
)
FUNCS = [
    (lg.LLL_ERR, lg.lwsl_err, "E"),
    (lg.LLL_WARN, lg.lwsl_warn, "W"),
    (lg.LLL_NOTICE, lg.lwsl_notice, "N"),
    (lg.LLL_INFO, lg.lwsl_info, "I"),
    (lg.LLL_DEBUG, lg.lwsl_debug, "D"),
    (lg.LLL_PARSER, lg.lwsl_parser, "P"),
    (lg.LLL_HEADER, lg.lwsl_header, "H"),
    (lg.LLL_EXT, lg.lwsl_ext, "X"),
    (lg.LLL_CLIENT, lg.lwsl_client, "C"),
    (lg.LLL_LATENCY, lg.lwsl_latency, "L"),
]


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Each test starts from, and leaves, the state right after import."""
    lg.reset()
    yield
    lg.reset()


@pytest.fixture
def captured() -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    lg.set_log_level(lg.get_log_level(), lambda level, line: out.append((level, line)))
    return out


def no_host_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a plain program: nothing on the root logger (call it in the test body, after
    pytest has added its capture handlers for the call)."""
    monkeypatch.setattr(logging.getLogger(), "handlers", [])


def test_bit_values_are_lws() -> None:
    assert [b for b, _, _ in FUNCS] == [1 << n for n in range(10)]
    assert (lg.NOTICE, lg.PARSER, lg.HEADER, lg.EXT, lg.CLIENT, lg.LATENCY) == (25, 9, 8, 7, 6, 5)


def test_level_names_on_our_records_only() -> None:
    """Our records carry NOTICE/PARSER/... as levelname; logging's global names are
    untouched (a library must not rename levels for the whole program)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s"))
    lg.logger.addHandler(handler)
    try:
        lg.set_log_level(ALL, lambda level, line: None)
        for _, fn, _ in FUNCS:
            fn("m")
    finally:
        lg.logger.removeHandler(handler)
    assert stream.getvalue().split() == [
        "ERROR",
        "WARNING",
        "NOTICE",
        "INFO",
        "DEBUG",
        "PARSER",
        "HEADER",
        "EXT",
        "CLIENT",
        "LATENCY",
    ]
    assert [logging.getLevelName(n) for n in (25, 9, 5)] == ["Level 25", "Level 9", "Level 5"]


def test_reset_is_the_import_state() -> None:
    lg.set_log_level(ALL, lambda level, line: None)
    lg.reset()
    assert lg.get_log_level() == lg.LLL_ERR | lg.LLL_WARN | lg.LLL_NOTICE
    assert lg.get_emitter() is lg.emit_stderr
    assert lg.logger.level == logging.NOTSET
    assert [type(h).__name__ for h in lg.logger.handlers] == ["NullHandler"]


def test_default_is_err_warn_notice(captured: list[tuple[int, str]]) -> None:
    assert lg.get_log_level() == lg.LLL_ERR | lg.LLL_WARN | lg.LLL_NOTICE
    for _, fn, _ in FUNCS:
        fn("via %s", fn.__name__)
    assert captured == [
        (lg.LLL_ERR, "via lwsl_err"),
        (lg.LLL_WARN, "via lwsl_warn"),
        (lg.LLL_NOTICE, "via lwsl_notice"),
    ]


@pytest.mark.parametrize(("bit", "fn", "letter"), FUNCS)
def test_each_bit_alone(captured: list[tuple[int, str]], bit: int, fn, letter: str) -> None:
    lg.set_log_level(bit)
    for _, other, _ in FUNCS:
        other("x%d", 1)
    assert captured == [(bit, "x1")]
    assert LINE.match(lg.format_line(bit, "m")).group(1) == letter  # type: ignore[union-attr]


def test_all_bits_and_none(captured: list[tuple[int, str]]) -> None:
    lg.set_log_level(ALL)
    for _, fn, _ in FUNCS:
        fn("m")
    assert [b for b, _ in captured] == [b for b, _, _ in FUNCS]
    captured.clear()
    lg.set_log_level(0)
    for _, fn, _ in FUNCS:
        fn("m")
    lg.logger.error("library error")
    assert captured == []


def test_non_contiguous_mask_applies_to_library_records(captured: list[tuple[int, str]]) -> None:
    lg.set_log_level(lg.LLL_ERR | lg.LLL_DEBUG)
    lg.logger.warning("warn")  # what lwsbridge.context does
    lg.logger.log(lg.NOTICE, "notice")
    lg.logger.info("info")
    lg.logger.debug("debug %s", "yes")
    lg.logger.error("error")
    assert captured == [(lg.LLL_DEBUG, "debug yes"), (lg.LLL_ERR, "error")]


def test_emit_none_keeps_emitter(captured: list[tuple[int, str]]) -> None:
    lg.set_log_level(lg.LLL_INFO)
    lg.lwsl_info("still %s", "here")
    assert captured == [(lg.LLL_INFO, "still here")]


def test_disabled_level_formats_nothing(captured: list[tuple[int, str]]) -> None:
    class Bomb:
        def __str__(self) -> str:
            raise AssertionError("formatted")

        __repr__ = __str__

    lg.set_log_level(lg.LLL_ERR)
    lg.lwsl_debug("value %s %r", Bomb(), Bomb())
    lg.lwsl_info("value %s", Bomb())
    lg.lwsl_parser("value %s", Bomb())
    assert captured == []


def test_exception_text_reaches_emitter(captured: list[tuple[int, str]]) -> None:
    try:
        raise ValueError("kaboom")
    except ValueError:
        lg.logger.exception("callback raised")
    ((level, line),) = captured
    assert level == lg.LLL_ERR
    assert line.startswith("callback raised\nTraceback") and "kaboom" in line


def test_default_line_format(capsys: pytest.CaptureFixture[str]) -> None:
    lg.emit_stderr(lg.LLL_NOTICE, "hello 7681")
    err = capsys.readouterr().err
    assert err.endswith("\n") and err.count("\n") == 1
    m = LINE.match(err.rstrip("\n"))
    assert m and m.groups() == ("N", "hello 7681")


def test_default_emitter_prints_without_host_handlers(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_host_handlers(monkeypatch)
    lg.set_log_level(lg.LLL_ERR | lg.LLL_WARN | lg.LLL_NOTICE, lg.emit_stderr)
    lg.lwsl_notice("served %d", 3)
    lg.lwsl_info("hidden")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    m = LINE.match(lines[0])
    assert m and m.groups() == ("N", "served 3")


def test_no_double_printing_with_root_handler(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_host_handlers(monkeypatch)
    stream = io.StringIO()
    root_handler = logging.StreamHandler(stream)
    root_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(root_handler)
    lg.set_log_level(lg.LLL_ERR | lg.LLL_WARN | lg.LLL_NOTICE, lg.emit_stderr)
    lg.lwsl_notice("once %s", "only")
    lg.logger.warning("library warning")
    assert capsys.readouterr().err == ""  # the stock emitter steps aside
    assert stream.getvalue().splitlines() == [
        "NOTICE lwsbridge once only",
        "WARNING lwsbridge library warning",
    ]


def test_caplog_sees_records_once(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    lg.set_log_level(lg.LLL_ERR | lg.LLL_WARN | lg.LLL_NOTICE | lg.LLL_INFO)
    lg.lwsl_info("to %s", "caplog")
    recs = [r for r in caplog.records if r.name == "lwsbridge"]
    assert [(r.levelno, r.getMessage()) for r in recs] == [(logging.INFO, "to caplog")]
    assert "to caplog" not in capsys.readouterr().err


def test_custom_emitter_and_host_handler_each_get_it(
    captured: list[tuple[int, str]], caplog: pytest.LogCaptureFixture
) -> None:
    lg.lwsl_err("both")
    assert captured == [(lg.LLL_ERR, "both")]
    assert [r.getMessage() for r in caplog.records if r.name == "lwsbridge"] == ["both"]


def test_use_logging_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_host_handlers(monkeypatch)
    stream = io.StringIO()
    logging.getLogger().addHandler(logging.StreamHandler(stream))
    lg.use_logging_only()
    assert lg.get_emitter() is None
    lg.set_log_level(lg.LLL_ERR | lg.LLL_NOTICE)  # emit=None keeps "no emitter"
    assert lg.get_emitter() is None
    assert not [h for h in lg.logger.handlers if type(h).__name__ == "_EmitHandler"]
    lg.lwsl_notice("logging only")
    assert capsys.readouterr().err == ""
    assert stream.getvalue() == "logging only\n"


def test_host_level_takes_over_until_set_log_level(captured: list[tuple[int, str]]) -> None:
    lg.set_log_level(lg.LLL_ERR)
    lg.logger.setLevel(logging.DEBUG)  # what caplog.set_level(..., logger="lwsbridge") does
    lg.logger.debug("host asked for debug")
    assert captured == [(lg.LLL_DEBUG, "host asked for debug")]
    lg.set_log_level(lg.LLL_ERR)
    lg.logger.debug("bits again")
    assert len(captured) == 1


@pytest.mark.parametrize(
    ("bit", "prio"),
    [
        (lg.LLL_ERR, syslog.LOG_ERR),
        (lg.LLL_WARN, syslog.LOG_WARNING),
        (lg.LLL_NOTICE, syslog.LOG_NOTICE),
        (lg.LLL_INFO, syslog.LOG_INFO),
        (lg.LLL_DEBUG, syslog.LOG_DEBUG),
        (lg.LLL_PARSER, syslog.LOG_DEBUG),
        (lg.LLL_LATENCY, syslog.LOG_DEBUG),
    ],
)
def test_emit_syslog_priority(monkeypatch: pytest.MonkeyPatch, bit: int, prio: int) -> None:
    calls: list[tuple[int, str]] = []
    monkeypatch.setattr(syslog, "syslog", lambda p, m: calls.append((p, m)))
    lg.emit_syslog(bit, "to syslog")
    assert calls == [(prio, "to syslog")]


def test_syslog_through_set_log_level(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, str]] = []
    monkeypatch.setattr(syslog, "syslog", lambda p, m: calls.append((p, m)))
    lg.set_log_level(lg.LLL_ERR | lg.LLL_WARN, lg.emit_syslog)
    lg.lwsl_warn("disk %d%% full", 93)
    lg.lwsl_notice("not enabled")
    assert calls == [(syslog.LOG_WARNING, "disk 93% full")]


def test_setup_logging_uses_bits(captured: list[tuple[int, str]]) -> None:
    setup_logging(lg.LLL_ERR | lg.LLL_INFO)
    assert lg.get_log_level() == lg.LLL_ERR | lg.LLL_INFO
    lg.lwsl_info("info")
    lg.lwsl_notice("notice")
    assert captured == [(lg.LLL_INFO, "info")]


def test_lws_formatter_for_host_handlers() -> None:
    rec = logging.LogRecord("lwsbridge", lg.NOTICE, __file__, 1, "a %s", ("b",), None)
    m = LINE.match(lg.LwsFormatter().format(rec))
    assert m and m.groups() == ("N", "a b")


def test_fresh_process_prints_lws_lines_once() -> None:
    """A plain program: one lws-style line on stderr; with basicConfig: one host line."""
    code = (
        "from lwsbridge.log import lwsl_notice, lwsl_info; lwsl_notice('hi %d', 1); lwsl_info('no')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and LINE.match(lines[0]), out.stderr
    code = "import logging; logging.basicConfig(level=logging.DEBUG); " + code
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stderr.splitlines() == ["NOTICE:lwsbridge:hi 1"]
