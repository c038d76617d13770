"""HTTP facts shared by the sources (store APIs) and the channels (receivers).

ONE `Retry-After` parser, because two disagreed: the channels' took `99999999` at its word (a
row due in ~1,157 days, never dead-lettered, never listed) while the sources' capped it at an
hour. Both now read it here: delta-seconds or an HTTP-date (RFC 9110 §10.2.3), never negative,
never more than `MAX_RETRY_AFTER`, and None for anything else.
"""

from __future__ import annotations

import math
import time
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER = 3600.0
"""A `Retry-After` beyond an hour is treated as an hour: a misconfigured proxy or receiver must
not silence a store or strand a delivery for a day; the next answer can always ask again."""


def parse_retry_after(
    value: str | None, *, now: float | None = None, cap: float = MAX_RETRY_AFTER
) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date), at most `cap`,
    or None when absent or unreadable. `now` is wall-clock epoch seconds (for the date form);
    a date without a zone is not an RFC 9110 date (those are GMT) and is ignored."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return min(max(seconds, 0.0), cap)
