"""Logging: lws-style level bits mapped onto the stdlib ``logging`` logger "lwsbridge"."""

from __future__ import annotations

import logging

__all__ = [
    "LLL_DEBUG",
    "LLL_ERR",
    "LLL_INFO",
    "LLL_NOTICE",
    "LLL_WARN",
    "NOTICE",
    "logger",
    "lwsl_debug",
    "lwsl_err",
    "lwsl_info",
    "lwsl_notice",
    "lwsl_warn",
]

# lws's bits (lws-logs.h): LLL_ERR 1, LLL_WARN 2, LLL_NOTICE 4, LLL_INFO 8, LLL_DEBUG 16.
LLL_ERR = 1 << 0
LLL_WARN = 1 << 1
LLL_NOTICE = 1 << 2
LLL_INFO = 1 << 3
LLL_DEBUG = 1 << 4

#: lws's NOTICE sits between INFO and WARNING
NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

logger = logging.getLogger("lwsbridge")


def lwsl_err(msg: str, *args: object) -> None:
    logger.error(msg, *args)


def lwsl_warn(msg: str, *args: object) -> None:
    logger.warning(msg, *args)


def lwsl_notice(msg: str, *args: object) -> None:
    logger.log(NOTICE, msg, *args)


def lwsl_info(msg: str, *args: object) -> None:
    logger.info(msg, *args)


def lwsl_debug(msg: str, *args: object) -> None:
    logger.debug(msg, *args)
