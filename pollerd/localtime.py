"""Times typed on the command line, read the way the seller means them.

`--since 2026-11-01` from a shop in Shanghai means midnight in Shanghai, not in Greenwich: read
as UTC it silently skips 00:00-08:00 local (issue 11). So a date, or a time without an offset,
is read in `[pollerd] timezone`; a time with an offset (`Z`, `+08:00`) is taken as written. The
commands print what they resolved, in both zones, before acting on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

EXAMPLES = "e.g. 2026-11-01, 2026-11-01T08:30 or 2026-11-01T00:00:00Z"


def parse_local(value: str, zone: str) -> datetime:
    """An aware datetime for `value` (RFC 3339 or ISO 8601, a date alone meaning its local
    midnight); ValueError if it is not a time. A local time that a DST change skips or repeats
    resolves as `zoneinfo` does (fold 0: the earlier reading); `describe` shows the result."""
    text = value.strip()
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(zone))
    return when


def describe(when: datetime, zone: str) -> str:
    """`2026-11-01 00:00:00 Asia/Shanghai (2026-10-31T16:00:00Z)`: the local reading, so the
    operator sees what they meant, and the UTC instant, which the logs and the API use."""
    local = when.astimezone(ZoneInfo(zone))
    utc = when.astimezone(UTC)
    return f"{local:%Y-%m-%d %H:%M:%S} {zone} ({utc:%Y-%m-%dT%H:%M:%S}Z)"
