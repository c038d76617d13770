"""Logging: loguru with one sink, and every record redacted before any sink sees it.

Redaction lives here, not at call sites, because the leaks come from text nobody wrote on
purpose: an httpx error quotes the full URL (WooCommerce query auth puts `consumer_secret=` in
it), an exception message echoes a header, a debug line dumps an order with the customer's
e-mail. So one patcher rewrites the message, every `extra` value and the traceback text of
every record: resolved secret values, credential-looking parameters and headers, URL passwords,
e-mail addresses and phone numbers. `diagnose=False` keeps loguru from printing local
variables (which would include secrets) in tracebacks.

Caveat: patchers added later with `logger.patch()` run after this one; they must not add
sensitive text.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any, Literal, TextIO

from loguru import logger

from pollerd.model import mask_email, mask_phone
from pollerd.secrets import known_secret_values

MASK = "****"

# `name=value` in query strings, form bodies and OAuth headers, and `"name": "value"` in JSON or
# dict reprs, for any name that is or ends in `_secret`, `_key`, `_signature`, `_token`,
# `_password` (consumer_secret, consumer_key, oauth_signature, access_token, token, key, ...).
_NAME = r"(?:[a-z0-9]+_)*(?:secret|key|signature|token|password|passwd)"
_PARAM = re.compile(rf"(?i)(?<![\w-])({_NAME})=(\"?)[^\s\"&#,;]+")
_QUOTED = re.compile(rf"(?i)([\"'])({_NAME})\1(\s*:\s*)([\"'])(?:(?!\4).)+\4")
# Credential headers: an optional scheme word (`Basic`, `Bearer`, `OAuth`, ...) and the token;
# OAuth 1.0a parameters inside the header are caught by _PARAM. Cookies run to the end of the
# line or the closing quote, since one header holds many `name=value` pairs.
_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-shopify-access-token|x-api-key|x-auth-token)"
    r"([\"']?\s*[:=]\s*[\"']?)(?:(?:basic|bearer|token|oauth|digest|negotiate)\s+)?"
    r"[^\s\"',;}]+"
)
_COOKIE = re.compile(r"(?i)\b((?:set-)?cookie)([\"']?\s*[:=]\s*[\"']?)[^\r\n\"']+")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^@\s/]+@")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# 7+ digits, optionally after `+` and with single spaces. Digits glued to an identifier
# (`acme:5273485869312:order.paid`, `/orders/5273485869312`, `#1001`), decimals and dates are
# not phone numbers and stay readable; a bare long number in prose is masked.
_PHONE = re.compile(r"(?<![\w/:#.*+-])(?:\+\s?)?\d(?: ?\d){6,}(?![\w/:*]|\.\d)")


class _SecretValues:
    """One alternation over every resolved secret; rebuilt only when the set changes."""

    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None

    def pattern(self) -> re.Pattern[str] | None:
        values = known_secret_values()
        if values != self._values:
            longest_first = sorted(values, key=len, reverse=True)
            alternation = "|".join(re.escape(value) for value in longest_first)
            self._pattern = re.compile(alternation) if alternation else None
            self._values = values
        return self._pattern


_SECRETS = _SecretValues()


def redact(text: str) -> str:
    """Mask secrets and personal data in one piece of text (idempotent)."""
    pattern = _SECRETS.pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _PARAM.sub(rf"\1=\2{MASK}", text)
    text = _QUOTED.sub(rf"\1\2\1\3\4{MASK}\4", text)
    text = _HEADER.sub(rf"\1\2{MASK}", text)
    text = _COOKIE.sub(rf"\1\2{MASK}", text)
    text = _USERINFO.sub(rf"\1:{MASK}@", text)
    text = _EMAIL.sub(lambda m: mask_email(m.group(0)) or MASK, text)
    return _PHONE.sub(lambda m: mask_phone(m.group(0)) or MASK, text)


def _redact_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(item) for item in value]
    return redact(str(value))  # an object's str() is what a sink would print anyway


def redact_record(record: Any) -> None:
    """The loguru patcher. The traceback is rendered here, redacted, into `extra["traceback"]`
    (and the exception dropped): exception messages quote URLs and headers verbatim."""
    record["message"] = redact(record["message"])
    extra = record["extra"]
    for key, value in extra.items():
        extra[key] = _redact_value(value)
    if record["exception"] is not None:
        kind, value, tb = record["exception"]
        extra["traceback"] = redact("".join(traceback.format_exception(kind, value, tb)))
        record["exception"] = None


def _human(record: Any) -> str:
    line = "{time:YYYY-MM-DD HH:mm:ss.SSS} | <level>{level: <8}</level> | {message}"
    keys = [key for key in record["extra"] if key != "traceback" and key.isidentifier()]
    if keys:
        line += " |" + "".join(f" {key}={{extra[{key}]}}" for key in keys)
    if "traceback" in record["extra"]:
        line += "\n{extra[traceback]}"
    return line + "\n"


class _ToLoguru(logging.Handler):
    """Route stdlib logging (httpx, apscheduler) through the same redaction and sink."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = logging.currentframe(), 2
        while frame is not None and frame.f_code.co_filename == logging.__file__:
            frame, depth = frame.f_back, depth + 1
        bound = logger.bind(logger=record.name).opt(depth=depth, exception=record.exc_info)
        bound.log(level, record.getMessage())


def setup(
    level: str = "INFO",
    fmt: Literal["human", "json"] = "human",
    stream: TextIO | None = None,
) -> int:
    """Replace every sink with one on `stream` (default: `sys.stderr` at call time, so a
    redirected stderr is honoured). `human` is one line per record, coloured on a terminal;
    `json` is one JSON object per line (loguru `serialize`) for journald/log shippers.
    Returns the loguru handler id."""
    stream = sys.stderr if stream is None else stream
    logger.remove()
    logger.configure(patcher=redact_record)
    options: dict[str, Any] = {"level": level.upper(), "diagnose": False, "backtrace": False}
    formatter: str | Callable[[Any], str]
    if fmt == "json":
        formatter = "{message}"
        options.update(serialize=True, colorize=False)
    else:
        formatter = _human
        options.update(colorize=None)  # loguru colours only when the stream is a terminal
    handler = logger.add(stream, format=formatter, **options)
    logging.basicConfig(handlers=[_ToLoguru()], level=logging.INFO, force=True)
    for noisy in ("httpx", "httpcore"):  # one line per request, with full URLs
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
