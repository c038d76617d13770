"""Where an interrupted WooCommerce backfill stands, so the next run of the same window goes on
from there instead of from page 1 (2,031 orders take ~21 pages; one failure at page 3 used to
cost the first pages again, and again after every retry).

The point is kept in `Store.meta` under `backfill:{store}:{since}:{until}`, like the Shopify
bulk export's operation id, and dropped when the walk finishes. WooCommerce pages are offsets
over orders sorted by id, and offsets move when orders enter or leave the window between the
runs, so the next run re-reads the last page it finished and trusts the point only if that
page still starts at or before the last id done: then every order after it is on that page or
a later one. Otherwise (orders left the window) it starts again from page 1: snapshots make the
re-read pages cheap no-ops, and nothing is skipped.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime


@dataclass(frozen=True)
class ResumePoint:
    page: int  # the last page finished (offset pages, 1-based)
    last_id: int  # the highest order id on it
    listed: int  # orders listed up to and including it


def resume_key(store: str, since: datetime, until: datetime | None) -> str:
    """One key per store and window: a backfill of another window starts on its own."""
    return f"backfill:{store}:{since.isoformat()}:{until.isoformat() if until else 'now'}"


def parse(value: str | None) -> ResumePoint | None:
    """The saved point, or None when there is none or it does not read (start from page 1)."""
    if not value:
        return None
    try:
        data = json.loads(value)
        point = ResumePoint(int(data["page"]), int(data["last_id"]), int(data["listed"]))
    except (ValueError, TypeError, KeyError):
        return None
    return point if point.page >= 1 and point.listed >= 0 else None


def dump(point: ResumePoint) -> str:
    return json.dumps(asdict(point))
