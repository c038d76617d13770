"""What every config model is built from, and what plugins import for their own keys:
durations with bounds, validators that explain themselves (`invalid`: problem and fix), the
strict base model, the shared types of store keys, and `Secret` references.

Messages never echo pydantic's `input`: for a field typed `Secret` that is the secret itself.
"""

from __future__ import annotations

import contextlib
import difflib
import re
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from functools import cache
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from pollerd.model import EVENT_TYPES
from pollerd.secrets import Secret

__all__ = [
    "DAY",
    "EXAMPLE",
    "LONGEST",
    "YEAR",
    "Duration",
    "EventGlob",
    "Interval",
    "Noticed",
    "Overlap",
    "QuietHours",
    "Secret",
    "StartFrom",
    "StoreName",
    "StrictModel",
    "Sweep",
    "TimeZone",
    "Timeout",
    "at_least",
    "at_most",
    "http_address",
    "invalid",
    "parse_duration",
    "quiet_window",
    "short",
]

EXAMPLE = "see config.example.toml"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
# Every duration is bounded here, so none can overflow timedelta, datetime arithmetic or a
# sleep later ("100000000d" passed the loader and crashed `run`); keys whose sane range is
# far shorter say so with `at_most`.
LONGEST = timedelta(days=3650)
_LONGEST_WHY = "10 years is the longest duration pollerd accepts"


def parse_duration(value: Any) -> timedelta:
    """`"2s"`, `"5m"`, `"72h"`, `"1d"`, `"500ms"` → timedelta; ValueError explains the format
    or the bound (`LONGEST`)."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNITS[match.group(2)]  # "9"*400 is inf, not an error
    else:
        raise ValueError(
            f'{value!r} is not a duration (write a string such as "2s", "5m", "72h" or "1d")'
        )
    if not seconds <= LONGEST.total_seconds():
        raise ValueError(f"must be at most {short(LONGEST)} ({_LONGEST_WHY})")
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


def short(span: timedelta) -> str:
    """A bound as the user would write it: "1d", "12h", "90s"."""
    seconds = span.total_seconds()
    for unit in ("d", "h", "m", "s"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{seconds / _UNITS[unit]:g}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def invalid(problem: str, fix: str = "", key: str = "") -> PydanticCustomError:
    """A validation error that keeps problem and fix apart for the report; `key` names the
    field when a whole-model check raises it (pydantic's loc then stops at the model)."""
    template = "{problem} ({fix})" if fix else "{problem}"
    return PydanticCustomError("pollerd", template, {"problem": problem, "fix": fix, "key": key})


def http_address(value: str, example: str) -> SplitResult:
    """`value` split, if it is an http:// or https:// address with a host (and a port in
    range); else the error a user reads, with `example` as the fix. For every key that names a
    web address (a store's, a channel's, pollerd's own); the caller checks what else it needs."""
    parts = urlsplit(value.strip())
    try:
        valid = bool(parts.hostname) and parts.port != 0
    except ValueError:  # a port that is not a number in range
        valid = False
    if parts.scheme not in ("http", "https") or not valid:
        raise invalid("must be an http:// or https:// address", f'e.g. "{example}"')
    return parts


def at_least(minimum: timedelta, why: str) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if value < minimum:
            raise invalid(f"must be at least {minimum.total_seconds():g}s", why)
        return value

    return AfterValidator(check)


def at_most(maximum: timedelta, why: str) -> AfterValidator:
    def check(value: timedelta) -> timedelta:
        if value > maximum:
            raise invalid(f"must be at most {short(maximum)}", why)
        return value

    return AfterValidator(check)


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(value, _zones(), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        fix = f'{hint}e.g. "Asia/Shanghai", "Europe/Berlin" or "UTC"'
        raise invalid(f"{value!r} is not an IANA time zone", fix) from None
    return value


def _start_from(value: Any) -> Any:
    """ "now" or an aware time: a naive one would silently mean the server's local zone."""
    if value == "now":
        return "now"
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = datetime.fromisoformat(value.strip())
    if isinstance(value, datetime) and value.utcoffset() is not None:
        if value.year < 1970:  # year 1 passed, then `start - overlap` crashed the first pass
            raise invalid(f"{value.isoformat()} is before 1970", 'use "now" or a later time')
        if value > datetime.now(UTC):
            # The cursor would start there and be stored: nothing before it ever alerts, while
            # `check` and `status` say ok, and a later correction of this key changes nothing.
            raise invalid(
                f"{value.isoformat()} is in the future: no change before it would ever alert",
                'use "now" (alerts start at the first run) or a past time with an offset',
            )
        return value
    raise invalid(
        'must be "now" or an RFC 3339 time with an offset',
        'e.g. "2026-01-01T00:00:00+08:00" or "2026-01-01T00:00:00Z"',
    )


# Routable events: the order events, and the one seller rule event outside `alert.*` (the
# dispute deadline reminder, pollerd.alerts.disputes), which a route names as such.
ROUTED_EVENTS = (*EVENT_TYPES, "dispute.deadline")


def _event_glob(value: str) -> str:
    if value.startswith("alert.") or any(fnmatchcase(t, value) for t in ROUTED_EVENTS):
        return value
    close = difflib.get_close_matches(value, ROUTED_EVENTS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    fix = f"{hint}known: {', '.join(ROUTED_EVENTS)}, order.*, alert.*"
    raise invalid(f"{value!r} matches no event", fix)


_QUIET = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
_QUIET_FIX = 'write "HH:MM-HH:MM" in 24-hour local time, e.g. "22:00-08:00"; it may cross midnight'


def quiet_window(value: str) -> tuple[int, int]:
    """`"22:00-08:00"` → (start, end) in minutes after local midnight; ValueError otherwise."""
    match = _QUIET.match(value)
    if match is None:
        raise ValueError(value)
    h1, m1, h2, m2 = (int(part) for part in match.groups())
    return h1 * 60 + m1, h2 * 60 + m2


def _quiet_hours(value: str) -> str:
    value = value.strip()
    try:
        start, end = quiet_window(value)
    except ValueError:
        raise invalid(f"{value!r} is not a time range", _QUIET_FIX) from None
    if start == end:
        fix = "an empty or all-day range is ambiguous; give two different times, or remove it"
        raise invalid(f"{value!r} starts and ends at the same time", fix)
    return value


_ONE_SECOND = "polling faster than once a second only burns the rate limit"
_TWO_SECONDS = (
    "modified_after is a strict > at one-second precision: less can miss an order "
    "changed in the cursor's second"
)
DAY, YEAR = timedelta(days=1), timedelta(days=365)
_DAILY = "a store polled less than daily is not an alert; use the sweeps for old orders"
_OVERLAP = "each pass re-reads every order changed in the overlap"
_REQUEST = "a request hanging longer holds up every other one behind it"
_SWEEP = (
    "a sweep reads every order changed in its window: a longer one reads the whole history "
    "each time"
)
_NOTICE = "a fault noticed later than that is noticed too late to act on"
TimeZone = Annotated[str, AfterValidator(_time_zone)]
Interval = Annotated[Duration, at_least(timedelta(seconds=1), _ONE_SECOND), at_most(DAY, _DAILY)]
Overlap = Annotated[Duration, at_least(timedelta(seconds=2), _TWO_SECONDS), at_most(DAY, _OVERLAP)]
Timeout = Annotated[Duration, at_most(timedelta(hours=1), _REQUEST)]
Sweep = Annotated[Duration, at_most(YEAR, _SWEEP)]
Noticed = Annotated[Duration, at_most(timedelta(days=30), _NOTICE)]
StoreName = Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,64}$")]
StartFrom = Annotated[Literal["now"] | datetime, BeforeValidator(_start_from)]
EventGlob = Annotated[str, AfterValidator(_event_glob)]
QuietHours = Annotated[str, AfterValidator(_quiet_hours)]


class StrictModel(BaseModel):
    # hide_input_in_errors: a literal secret that fails a check must not print in str(error)
    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, hide_input_in_errors=True
    )
