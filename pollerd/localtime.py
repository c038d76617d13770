"""Times typed on the command line, read the way the seller means them.

`--since 2026-11-01` from a shop in Shanghai means midnight in Shanghai, not in Greenwich: read
as UTC it silently skips 00:00-08:00 local (issue 11). So a date, or a time without an offset,
is read in `[pollerd] timezone`; a time with an offset (`Z`, `+08:00`) is taken as written. The
commands print what they resolved, in both zones, before acting on it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

EXAMPLES = "e.g. 2026-11-01, 2026-11-01T08:30 or 2026-11-01T00:00:00Z"
_FORM = re.compile(
    r"(\d{4}-\d{2}-\d{2})"  # the date
    r"(?:[Tt ](\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?))?"  # an optional time
    r"([Zz]|[+-]\d{2}(?::?\d{2})?)?",  # an optional offset
    re.ASCII,
)
"""RFC 3339 and its date-only short forms. `datetime.fromisoformat` alone takes ANY character
between date and time: `2026-11-01+08:00` (midnight at +08:00) was read as 08:00 local time
and `2026-11-01-05:00` as 05:00, silently (issue 12)."""
YEARS = (1900, 2999)
"""Times outside these years (UTC) are typos: `0001-01-01` in Shanghai is before year 1 in UTC
and `describe` raised OverflowError; year 1 or 9999 overflowed the window arithmetic too."""


def parse_local(value: str, zone: str) -> datetime:
    """An aware datetime for `value` (RFC 3339, a date alone meaning its midnight, local
    unless an offset follows); ValueError if it is not a time. A local time that a DST change
    skips or repeats resolves as `zoneinfo` does (fold 0: the earlier reading); `describe`
    shows the result."""
    form = _FORM.fullmatch(value.strip())
    if form is None:
        raise ValueError(f"{value!r} is not an RFC 3339 time")
    day, clock, offset = form.groups()
    offset = "+00:00" if offset in ("z", "Z") else offset or ""
    when = datetime.fromisoformat(f"{day}T{clock or '00:00'}{offset}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(zone))
    try:
        year = when.astimezone(UTC).year
    except OverflowError:
        year = 0
    if not YEARS[0] <= year <= YEARS[1]:
        raise ValueError(f"{value!r} is out of range (years {YEARS[0]}-{YEARS[1]})")
    return when


def describe(when: datetime, zone: str) -> str:
    """`2026-11-01 00:00:00 Asia/Shanghai (2026-10-31T16:00:00Z)`: the local reading, so the
    operator sees what they meant, and the UTC instant, which the logs and the API use."""
    local = when.astimezone(ZoneInfo(zone))
    utc = when.astimezone(UTC)
    return f"{local:%Y-%m-%d %H:%M:%S} {zone} ({utc:%Y-%m-%dT%H:%M:%S}Z)"
