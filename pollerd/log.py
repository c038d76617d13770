"""Logging: loguru, one sink chosen for where the output goes, every record redacted first.

Formats (`--log-format`, research §C.5):

* `journal`: the journald native protocol, one datagram per record to
  `/run/systemd/journal/socket` with `MESSAGE=`, `PRIORITY=`, `CODE_FILE=`/`CODE_LINE=`/
  `CODE_FUNC=`, `SYSLOG_IDENTIFIER=pollerd` and one field per `extra` key (`STORE=`,
  `CHANNEL=`, `EVENT_ID=`), so `journalctl -u pollerd STORE=acme` works. No libsystemd: the
  protocol is documented for self-made clients (systemd `docs/JOURNAL_NATIVE_PROTOCOL.md`).
  Without the socket (a container that inherited `JOURNAL_STREAM`), records go to stderr as
  lines with `<N>` priority prefixes, which journald's stdout stream understands.
* `human`: one line per record, coloured on a terminal.
* `json`: one small JSON object per line (`ts, level, msg, store, channel, event_id`, other
  extras, `exc`), not loguru's `serialize` (absolute paths, process and thread ids).
* `auto` (the default): `journal` when stderr is the journal stream systemd set up
  (`$JOURNAL_STREAM` equals stderr's `st_dev:st_ino`, as sd_journal_stream_fd(3) says to check),
  else `human` (cron mails stderr to a person; a log shipper asks for `json`).

Redaction lives here, not at call sites, because the leaks come from text nobody wrote on
purpose: an httpx error quotes the full URL (WooCommerce query auth puts `consumer_secret=` in
it), an exception message echoes a header, a debug line dumps an order with the customer's
e-mail. So one patcher rewrites the message, every `extra` value and the traceback text of
every record, for every sink: resolved secret values (`pollerd.secrets.known_secret_values`),
credential-looking parameters, headers and URL paths (Telegram `/bot<token>/`, Discord, Slack
and Feishu webhook paths, `shpat_`, `ck_`/`cs_`, `whsec_` keys), URL passwords, e-mail
addresses and phone numbers. `diagnose=False` keeps loguru from printing local variables
(which would include secrets) in tracebacks.

Caveat: patchers added later with `logger.patch()` run after this one; they must not add
sensitive text.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import socket
import struct
import sys
import threading
import traceback
from collections.abc import Callable
from datetime import UTC
from types import FrameType
from typing import Any, Literal, TextIO, get_args

from loguru import logger

from pollerd.model import mask_email, mask_phone
from pollerd.secrets import MASK, known_secret_values, registry_version

LogFormat = Literal["auto", "human", "json", "journal"]
FORMATS: tuple[str, ...] = get_args(LogFormat)
JOURNAL_SOCKET = "/run/systemd/journal/socket"
SYSLOG_IDENTIFIER = "pollerd"

# `name=value` in query strings, form bodies and OAuth headers, and `"name": "value"` in JSON or
# dict reprs, for any name that is or ends in `_secret`, `_key`, `_signature`, `_sign`, `_token`,
# `_password` (consumer_secret, consumer_key, oauth_signature, access_token, token, key, sign...).
_NAME = r"(?:[a-z0-9]+[_-])*(?:secret|key|apikey|signature|sign|sig|token|password|passwd)"
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
# URL userinfo: `user:password@` keeps the user, a lone `token@` is masked whole.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^@\s/]+@")
_USER_ONLY = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@*]+@(?=[^\s/@]+)")
# Credentials that are URL path segments or recognisable by their prefix; each with the plain
# substrings one of which must be present (a cheap test that skips the regex on most lines).
_TOKENS: tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...] = (
    (("/bot",), re.compile(r"(/bot)\d+:[^/\s?#\"']+"), rf"\1{MASK}"),  # Telegram /bot<token>/
    ((":",), re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}"), MASK),  # a bare Telegram bot token
    (("/webhooks/",), re.compile(r"(/api(?:/v\d+)?/webhooks/\d+/)[^/\s?#\"']+"), rf"\1{MASK}"),
    (("/services/",), re.compile(r"(/services/T[A-Z0-9]+/B[A-Z0-9]+/)[^/\s?#\"']+"), rf"\1{MASK}"),
    (
        ("hooks.slack", "HOOKS.SLACK", "Hooks.Slack"),
        re.compile(r"(?i)(hooks\.slack\.com/(?:workflows|triggers)/)[^\s?#\"']+"),
        rf"\1{MASK}",
    ),
    (("/open-apis/",), re.compile(r"(/open-apis/bot/v2/hook/)[^/\s?#\"']+"), rf"\1{MASK}"),
    (
        ("shpat_", "shpca_", "shppa_", "shpss_", "shpua_", "shpts_"),
        re.compile(r"\b(shp(?:at|ca|pa|ss|ua|ts)_)[A-Za-z0-9]+"),
        rf"\1{MASK}",
    ),
    (("ck_", "cs_"), re.compile(r"\b(c[ks]_)[A-Za-z0-9_]{6,}"), rf"\1{MASK}"),  # WooCommerce
    (("whsec_",), re.compile(r"\b(whsec_)[A-Za-z0-9+/=]+"), rf"\1{MASK}"),  # Standard Webhooks
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# 7+ digits, optionally after `+` and with single spaces; or groups written with dashes, dots
# or brackets (`555-625-1199`, `(555) 625-1199`, `+86 138-1234-5678`). Digits glued to an
# identifier (`acme:5273485869312:order.paid`, `/orders/5273485869312`, `#1001`), decimals and
# dates (two-digit groups) are not phone numbers and stay readable; a bare long number in
# prose is masked.
_PHONE = re.compile(
    r"(?<![\w/:#.*+-])(?:(?:\+\s?)?\d(?: ?\d){6,}"
    r"|(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[.-])\d{3,4}[ .-]\d{4})"
    r"(?![\w/:*]|\.\d)"
)


class _SecretValues:
    """One alternation over every resolved secret; rebuilt only when the set changes."""

    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self._version = -1

    def pattern(self) -> re.Pattern[str] | None:
        if registry_version() == self._version:
            return self._pattern
        self._version = registry_version()
        values = known_secret_values()
        if values != self._values:
            longest_first = sorted(values, key=len, reverse=True)
            alternation = "|".join(re.escape(value) for value in longest_first)
            self._pattern = re.compile(alternation) if alternation else None
            self._values = values
        return self._pattern


_SECRETS = _SecretValues()


def redact(text: str) -> str:
    """Mask secrets and personal data in one piece of text (idempotent). The token patterns
    run before the configured values: a registered value that is only part of a URL (a webhook
    URL without its hook id, say) would otherwise hide the context a pattern needs to find the
    token after it."""
    lower = text.lower()
    if "=" in text:
        text = _PARAM.sub(rf"\1=\2{MASK}", text)
    if '"' in text or "'" in text:
        text = _QUOTED.sub(rf"\1\2\1\3\4{MASK}\4", text)
    if "auth" in lower or "token" in lower or "api-key" in lower:
        text = _HEADER.sub(rf"\1\2{MASK}", text)
    if "cookie" in lower:
        text = _COOKIE.sub(rf"\1\2{MASK}", text)
    if "://" in text and "@" in text:
        text = _USERINFO.sub(rf"\1:{MASK}@", text)
        text = _USER_ONLY.sub(rf"\1{MASK}@", text)
    for hints, token, replacement in _TOKENS:
        if any(hint in text for hint in hints):
            text = token.sub(replacement, text)
    if "@" in text:
        text = _EMAIL.sub(lambda m: mask_email(m.group(0)) or MASK, text)
    text = _PHONE.sub(lambda m: mask_phone(m.group(0)) or MASK, text)
    pattern = _SECRETS.pattern()
    return pattern.sub(MASK, text) if pattern is not None else text


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


def install_redaction() -> None:
    """Make every record of this process pass `redact_record` before any sink sees it."""
    logger.configure(patcher=redact_record)


# formats ----------------------------------------------------------------------------------


def _human(record: Any) -> str:
    line = "{time:YYYY-MM-DD HH:mm:ss.SSS} | <level>{level: <8}</level> | {message}"
    keys = [key for key in record["extra"] if key != "traceback" and key.isidentifier()]
    if keys:
        line += " |" + "".join(f" {key}={{extra[{key}]}}" for key in keys)
    if "traceback" in record["extra"]:
        line += "\n{extra[traceback]}"
    return line + "\n"


def json_line(record: Any) -> str:
    """One record as a JSON object: `ts` (UTC, ms), `level`, `msg`, then the extras (`store`,
    `channel`, `event_id` first), then `exc` when there was an exception."""
    when = record["time"].astimezone(UTC).isoformat(timespec="milliseconds")
    entry: dict[str, Any] = {
        "ts": when.replace("+00:00", "Z"),
        "level": record["level"].name,
        "msg": record["message"],
    }
    extra = record["extra"]
    for key in ("store", "channel", "event_id"):
        if key in extra:
            entry[key] = extra[key]
    for key, value in extra.items():
        if key not in entry and key != "traceback":
            entry[key] = value
    if "traceback" in extra:
        entry["exc"] = extra["traceback"]
    return json.dumps(entry, ensure_ascii=False, default=str)


def _now_iso() -> str:
    from datetime import datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def error_line(message: str, exit_code: int) -> str:
    """A command's last words (`pollerd: ...`, then exit) as one `json` record, so a log
    shipper that asked for JSON gets no line it cannot parse (issue 12)."""
    entry = {"ts": _now_iso(), "level": "ERROR", "msg": redact(message), "exit_code": exit_code}
    return json.dumps(entry, ensure_ascii=False)


def _json_excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    """An error nothing caught, as one JSON record (the traceback in `exc`, redacted)."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    entry = {
        "ts": _now_iso(),
        "level": "CRITICAL",
        "msg": redact(f"uncaught error: {kind.__name__}: {exc}"),
        "exc": redact("".join(traceback.format_exception(kind, exc, tb))),
    }
    sys.stderr.write(json.dumps(entry, ensure_ascii=False) + "\n")
    sys.stderr.flush()


_PRIORITY = {"TRACE": 7, "DEBUG": 7, "INFO": 6, "SUCCESS": 5, "WARNING": 4, "ERROR": 3}


def priority(record: Any) -> int:
    """syslog priority: 7 debug, 6 info, 5 notice, 4 warning, 3 error, 2 critical."""
    name, number = record["level"].name, record["level"].no
    if name in _PRIORITY:
        return _PRIORITY[name]
    return 2 if number >= 50 else 3 if number >= 40 else 4 if number >= 30 else 6


def _extras_text(record: Any) -> str:
    pairs = [f" {k}={v}" for k, v in record["extra"].items() if k != "traceback"]
    return " |" + "".join(pairs) if pairs else ""


def prefixed_lines(record: Any) -> str:
    """`<N>message | key=value` for journald's stdout stream (`SyslogLevelPrefix=` on by
    default); every traceback line carries the prefix too, so none of it drops to `info`."""
    text = record["message"] + _extras_text(record)
    if "traceback" in record["extra"]:
        text += "\n" + record["extra"]["traceback"].rstrip("\n")
    prefix = f"<{priority(record)}>"
    return "".join(f"{prefix}{line}\n" for line in text.split("\n"))


_FIELD = re.compile(r"[^A-Z0-9_]")
_RESERVED = re.compile(r"^(MESSAGE|PRIORITY|CODE_.*|SYSLOG_.*|_.*|[0-9].*)$")


def journal_field(key: str) -> str | None:
    """An `extra` key as a journal field name (uppercase, digits, `_`, at most 64), or None
    when it would clash with a field pollerd or journald sets."""
    name = _FIELD.sub("_", key.upper())[:64]
    return None if not name or _RESERVED.match(name) else name


def _field(name: str, value: object) -> bytes:
    data = str(value).encode("utf-8", "replace")
    if b"\n" in data:  # binary-safe form: NAME\n, 64-bit little-endian length, data, \n
        return name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
    return name.encode() + b"=" + data + b"\n"


def journal_entry(record: Any) -> bytes:
    """One record in the native protocol's serialization."""
    message = record["message"]
    extra = record["extra"]
    if "traceback" in extra:
        message += "\n" + str(extra["traceback"]).rstrip("\n")
    fields = [
        _field("MESSAGE", message),
        _field("PRIORITY", priority(record)),
        _field("SYSLOG_IDENTIFIER", SYSLOG_IDENTIFIER),
        _field("CODE_FILE", record["file"].path),
        _field("CODE_LINE", record["line"]),
        _field("CODE_FUNC", record["function"]),
    ]
    for key, value in extra.items():
        name = journal_field(key) if key != "traceback" else None
        if name is not None and value is not None:
            rendered = value if isinstance(value, str) else json.dumps(value, default=str)
            fields.append(_field(name, rendered))
    return b"".join(fields)


class JournalSink:
    """A loguru sink speaking the journald native protocol. A record too big for one datagram
    goes in a sealed memfd passed with SCM_RIGHTS (as sd_journal_sendv does); when journald
    cannot be reached the record is written to `fallback` with priority prefixes instead of
    being lost."""

    def __init__(self, path: str = JOURNAL_SOCKET, fallback: TextIO | None = None) -> None:
        self.path = path
        self.fallback = fallback
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._lock = threading.Lock()

    def __call__(self, message: Any) -> None:
        record = message.record
        data = journal_entry(record)
        try:
            with self._lock:
                try:
                    self._sock.sendto(data, self.path)
                except OSError as exc:
                    if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                        raise
                    self._send_memfd(data)
        except OSError:
            stream = self.fallback if self.fallback is not None else sys.stderr
            stream.write(prefixed_lines(record))
            stream.flush()

    def _send_memfd(self, data: bytes) -> None:
        fd = os.memfd_create("pollerd-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            seals = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", fd))]
            self._sock.sendmsg([], rights, 0, self.path)  # socket.send_fds drops the address
        finally:
            os.close(fd)

    def close(self) -> None:
        self._sock.close()


class _LineSink:
    """Writes `render(record)` to a stream looked up at write time (a redirected stderr is
    honoured) and flushes: a daemon's last lines must not sit in a buffer at SIGKILL."""

    def __init__(self, render: Callable[[Any], str], stream: TextIO | None) -> None:
        self.render = render
        self.stream = stream

    def __call__(self, message: Any) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        text = self.render(message.record)
        stream.write(text if text.endswith("\n") else text + "\n")
        stream.flush()


def is_journal_stream(stream: TextIO) -> bool:
    """True when `stream` is the journal connection systemd gave this service: it must match
    `$JOURNAL_STREAM` (`st_dev:st_ino`), not merely exist, since the variable is inherited by
    children whose stderr was redirected elsewhere."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    device, sep, inode = expected.partition(":")
    if not sep or not device.isdigit() or not inode.isdigit():
        return False
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # io.StringIO has no usable fileno
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


def choose_format(requested: str, stream: TextIO) -> str:
    """`auto` → `journal` when stderr is systemd's journal stream, else `human`."""
    if requested != "auto":
        return requested
    return "journal" if is_journal_stream(stream) else "human"


class _ToLoguru(logging.Handler):
    """Route stdlib logging (httpx, apscheduler) through the same redaction and sink."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame: FrameType | None = logging.currentframe()
        depth = 2
        while frame is not None and frame.f_code.co_filename == logging.__file__:
            frame, depth = frame.f_back, depth + 1
        bound = logger.bind(logger=record.name).opt(depth=depth, exception=record.exc_info)
        bound.log(level, record.getMessage())


_INSTALLED: list[int] = []
_JOURNALS: list[JournalSink] = []


def setup(
    level: str = "INFO",
    fmt: str = "auto",
    stream: TextIO | None = None,
    journal_socket: str | None = None,
) -> str:
    """Replace the sink this function installed before (and loguru's default stderr sink) by
    one for `fmt` on `stream` (default: `sys.stderr` at write time). Sinks added by others
    (tests, embedding code) are left alone. Returns the format chosen (`auto` resolved)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(FORMATS)}")
    chosen = choose_format(fmt, stream if stream is not None else sys.stderr)
    for handler in [*_INSTALLED, 0]:  # 0: the stderr sink loguru adds on import
        with contextlib.suppress(ValueError):
            logger.remove(handler)
    _INSTALLED.clear()
    while _JOURNALS:
        _JOURNALS.pop().close()
    install_redaction()
    options: dict[str, Any] = {"level": level.upper(), "diagnose": False, "backtrace": False}
    if chosen == "human":
        target: Any = stream if stream is not None else sys.stderr
        _INSTALLED.append(logger.add(target, format=_human, colorize=None, **options))
    elif chosen == "json":
        _INSTALLED.append(logger.add(_LineSink(json_line, stream), format="{message}", **options))
        sys.excepthook = _json_excepthook
    else:
        path = journal_socket or JOURNAL_SOCKET
        sink: Any
        if os.path.exists(path):
            journal = JournalSink(path, stream)
            _JOURNALS.append(journal)
            sink = journal
        else:  # no journald socket here (a container): priority-prefixed lines on stderr
            sink = _LineSink(prefixed_lines, stream)
        _INSTALLED.append(logger.add(sink, format="{message}", **options))
    logging.basicConfig(handlers=[_ToLoguru()], level=logging.INFO, force=True)
    for noisy in ("httpx", "httpcore"):  # one line per request, with full URLs
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return chosen
