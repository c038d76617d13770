"""Reading order payloads strictly: a field that breaks the API's contract is an error naming the
store, the order and the field, never a silently wrong snapshot. Shared by every source."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pollerd.errors import SourceError
from pollerd.model import parse_utc


class OrderPayloadError(SourceError):
    """An order (or listing row) that breaks the API's contract: names the order and field.

    Neither retryable (the same order comes back the same way) nor a store-wide fatal problem;
    the daemon logs it as an error of the pass.
    """

    def __init__(self, store: str, order_id: object, field: str, problem: str) -> None:
        self.order_id = order_id
        self.field = field
        self.problem = problem
        super().__init__(store, f"order {order_id}: field {field}: {problem}")


def payload_date(
    payload: dict[str, Any], field: str, store: str, oid: str, *, required: bool = False
) -> datetime | None:
    """An API date as aware UTC (`Z`, an offset, or WooCommerce's naive `*_gmt`)."""
    raw = payload.get(field)
    if raw is None or raw == "":
        if required:
            raise OrderPayloadError(store, oid, field, "missing")
        return None
    if not isinstance(raw, str):
        raise OrderPayloadError(store, oid, field, f"not a date string: {raw!r}")
    try:
        return parse_utc(raw)
    except ValueError:
        raise OrderPayloadError(store, oid, field, f"not an ISO 8601 date: {raw[:40]!r}") from None
