"""Shopify's side feeds: order deletions (events) and Shopify Payments disputes.

Neither shows up in the orders listing (research/shopify.md §1.6–§1.7, "Implications" 8):

- A deleted order simply disappears from `orders`; the only trace is a `BasicEvent` with
  `subjectType: ORDER`, `action: destroy` (GraphQL `events`, 2024-10+; retained one year).
  Events are "not realtime" (seconds, rarely minutes), so the caller re-reads with an overlap
  and de-duplicates by order id.
- Disputes change status after they are opened, and a `since_id`-style feed (Airbyte's) only
  finds new ones; so we read those initiated since `since` *and* every one still open.
- Shopify's search silently ignores a term it cannot parse, which would widen the filter; so
  each row is checked against the filter again here. A widened events filter would otherwise
  turn every order event into a "deletion".

A missing scope is not an outage: `ACCESS_DENIED` becomes `FeedUnavailable`, naming the scope
and the fix, and the daemon warns once and goes on polling orders.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from loguru import logger

from pollerd.errors import RetryableSourceError, SourceError
from pollerd.model import parse_utc
from pollerd.sources.base import Deletion, Dispute, FeedUnavailable
from pollerd.sources.payload import EARLIEST_YEAR, LATEST_YEAR
from pollerd.sources.shopify.client import ShopifyAccessDenied
from pollerd.sources.shopify.normalize import money, table

if TYPE_CHECKING:
    from pollerd.sources.shopify.client import ShopifyClient

EVENTS_PAGE = 250
EVENT_COST = 1  # one object per event
DISPUTES_PAGE = 100  # keeps the query at ~400 points of the 1000 a single query may cost
DISPUTE_COST = 4  # dispute, amount, reasonDetails, order
MAX_PAGES = 1000
"""A runaway guard: 250 000 deletions or 100 000 disputes in one read is a bug, not a shop."""
OPEN_DISPUTES = ("NEEDS_RESPONSE", "UNDER_REVIEW")
DISPUTES_SCOPE = "read_shopify_payments_disputes"
_ORDER_GID = re.compile(r"^gid://shopify/Order/(\d+)$", re.ASCII)  # not "١٢" as an id
_ANY_GID = re.compile(r"^gid://shopify/[A-Za-z]+/(\d+)$", re.ASCII)

EVENTS_QUERY = """
query Deletions($first: Int!, $after: String, $query: String!) {
  events(first: $first, after: $after, query: $query, sortKey: CREATED_AT) {
    nodes {
      id action createdAt message
      ... on BasicEvent { subjectId subjectType }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""

DISPUTES_QUERY = """
query Disputes($first: Int!, $after: String, $query: String!) {
  disputes(first: $first, after: $after, query: $query) {
    nodes {
      id legacyResourceId status type initiatedAt evidenceDueBy finalizedOn
      amount { amount currencyCode }
      reasonDetails { reason }
      order { id legacyResourceId name }
    }
    pageInfo { hasNextPage endCursor }
  }
}
"""


class ShopifyFeeds:
    """`Feeds` for one Shopify store over a `ShopifyClient` (which paces, retries THROTTLED
    and types errors); this class only builds the queries and reads the rows."""

    def __init__(self, client: ShopifyClient, store: str) -> None:
        self.client = client
        self.store = store

    async def deletions(self, after: datetime) -> list[Deletion]:
        """Orders destroyed at or after `after`, oldest first (seconds precision, floored)."""
        floor = _floor(after)
        search = f"subject_type:ORDER AND action:destroy AND created_at:>='{_iso(floor)}'"
        found: dict[str, Deletion] = {}
        for event in await self._walk(
            "events", "deletions", EVENTS_QUERY, search, EVENTS_PAGE, EVENT_COST
        ):
            deletion = self._deletion(event, floor)
            if deletion is not None:
                found.setdefault(str(event.get("id")), deletion)
        return sorted(found.values(), key=lambda d: (d.deleted_at, int(d.order_id)))

    async def disputes(self, since: datetime) -> list[Dispute]:
        """Disputes initiated at or after `since`, plus every open one however old.

        A dispute that was open and is finalised after it fell out of both sets (initiated
        before `since`) is not returned: pass a `since` no later than the oldest dispute the
        caller still tracks as open to see its outcome.
        """
        floor = _floor(since)
        recent = f"initiated_at:>='{_iso(floor)}'"
        still_open = " OR ".join(f"status:{s.lower()}" for s in OPEN_DISPUTES)
        found: dict[str, Dispute] = {}
        for search, keep in (
            (recent, lambda d: d.initiated_at >= floor),
            (still_open, lambda d: d.status in OPEN_DISPUTES),
        ):
            nodes = await self._walk(
                "disputes", "disputes", DISPUTES_QUERY, search, DISPUTES_PAGE, DISPUTE_COST
            )
            for node in nodes:
                dispute = self._dispute(node)
                if keep(dispute):
                    found[dispute.id] = dispute
        return sorted(found.values(), key=lambda d: (d.initiated_at, d.id))

    # --- paging --------------------------------------------------------------------------------

    async def _walk(
        self, root: str, feed: str, query: str, search: str, first: int, node_cost: int
    ) -> list[dict[str, Any]]:
        """Every node of one connection search, page by page (cost: Shopify's connection rule,
        2 + first × node, plus pageInfo)."""
        nodes: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(MAX_PAGES):
            variables = {"first": first, "after": after, "query": search}
            try:
                data = await self.client.query(query, variables, estimate=3 + first * node_cost)
            except ShopifyAccessDenied as exc:
                raise self._unavailable(feed, exc) from None
            connection = data.get(root)
            if not isinstance(connection, dict):
                raise RetryableSourceError(
                    self.store, f"{feed} feed: `{root}` answered {connection!r}; retrying later"
                )
            nodes.extend(n for n in connection.get("nodes") or [] if isinstance(n, dict))
            info = connection.get("pageInfo") or {}
            cursor = info.get("endCursor")
            if not info.get("hasNextPage"):
                return nodes
            if not cursor or cursor == after:
                raise RetryableSourceError(
                    self.store, f"{feed} feed: the next page has no new cursor; retrying later"
                )
            after = cursor
        raise SourceError(self.store, f"{feed} feed: more than {MAX_PAGES} pages; stopped")

    def _unavailable(self, feed: str, exc: Exception) -> FeedUnavailable:
        if feed == "disputes":
            message = (
                f"cannot read Shopify Payments disputes: the app lacks the {DISPUTES_SCOPE} "
                "access scope; add it to the app's Admin API scopes and reinstall the app (or "
                "set disputes = false for this store to stop checking)"
            )
        else:
            message = (
                "cannot read order deletion events (ACCESS_DENIED: the events feed needs "
                "read_orders); grant it and reinstall the app (or set deletions = false for "
                "this store)"
            )
        logger.debug("store {}: {} feed denied: {}", self.store, feed, exc)
        return FeedUnavailable(self.store, feed, message)

    # --- rows ----------------------------------------------------------------------------------

    def _deletion(self, event: dict[str, Any], floor: datetime) -> Deletion | None:
        if event.get("action") != "destroy" or event.get("subjectType") != "ORDER":
            return None
        created = _date_time(event.get("createdAt"))
        subject = str(event.get("subjectId") or "")
        match = _ORDER_GID.match(subject)
        if created is None or match is None:
            # Cannot be tied to an order; dropping it loses nothing we could have acted on.
            logger.warning(
                "store {}: deletion event {} has subjectId {!r}, createdAt {!r}; skipped",
                self.store,
                event.get("id"),
                subject,
                event.get("createdAt"),
            )
            return None
        if created < floor:
            return None
        return Deletion(
            order_id=match.group(1), deleted_at=created, message=str(event.get("message") or "")
        )

    def _dispute(self, node: dict[str, Any]) -> Dispute:
        dispute_id = str(node.get("legacyResourceId") or _gid_number(node.get("id")) or "")
        initiated = _date_time(node.get("initiatedAt"))
        if not dispute_id or initiated is None:
            raise SourceError(
                self.store,
                f"dispute {node.get('id')!r}: missing id or initiatedAt (a contract change in "
                "the API version? check api_version)",
            )
        order = table(node, "order") or None
        amount = table(node, "amount")
        reason = table(node, "reasonDetails")
        finalized = _date_or_time(node.get("finalizedOn"))
        return Dispute(
            id=dispute_id,
            order_id=str(order.get("legacyResourceId") or _gid_number(order.get("id")))
            if order
            else None,
            order_number=order.get("name") if order else None,
            status=str(node.get("status") or "").upper(),
            type=str(node.get("type") or "").upper(),
            amount=_money(amount.get("amount")),
            currency=str(amount.get("currencyCode") or ""),
            reason=reason.get("reason"),
            initiated_at=initiated,
            evidence_due_by=_date_or_time(node.get("evidenceDueBy")),
            finalized_on=finalized.date() if isinstance(finalized, datetime) else finalized,
        )


def _floor(value: datetime) -> datetime:
    """Whole seconds (what Shopify stores and searches), never later than `value`."""
    if value.tzinfo is None:
        raise ValueError("feed bounds must be timezone-aware")
    return value.astimezone(UTC).replace(microsecond=0)


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _date_time(text: object) -> datetime | None:
    try:
        when = parse_utc(text) if isinstance(text, str) else None
    except (ValueError, OverflowError):  # OverflowError: year 1 with an offset east of UTC
        return None
    return when if when is None or EARLIEST_YEAR <= when.year <= LATEST_YEAR else None


def _date_or_time(text: object) -> date | datetime | None:
    """`Date` fields ("2026-11-30") stay dates; a `DateTime` stays a time (API versions and
    the REST resource disagree on which `evidenceDueBy` is)."""
    if not isinstance(text, str) or not text:
        return None
    if "T" in text:
        return _date_time(text)
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _gid_number(gid: object) -> str | None:
    match = _ANY_GID.match(str(gid or ""))
    return match.group(1) if match else None


def _money(amount: object) -> str:
    """Two decimals like `Order.total` ("100.0" → "100.00"); "" when it is not an amount
    ("NaN" or a list were shown as written, and "1e999999999" formatted a billion digits)."""
    try:
        return money(amount)
    except ValueError:
        return ""
