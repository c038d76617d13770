"""The sample order alert: what the channel contract suite, the channel tests and
`bench/channels.py` send, one builder instead of a copy per file.

`paid_event()` is "order #1001 paid" of a WooCommerce store "acme", € 25.00, with the keyword
arguments each caller varies (customer, line items, admin link, total, …); any other keyword
is an `Order` field. `CUSTOMER` and `ITEM` are the hostile customer name and item of the
channel briefs: markup of every flavour, a mass mention and a link, which must reach every
receiver inert.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pollerd.model import Event, LineItem, Order

AT = datetime(2026, 11, 22, 9, 32, 36, tzinfo=UTC)
ADMIN = "https://shop.example/wp-admin/post.php?post=1001&action=edit"
CUSTOMER = "<s>**x** @everyone [x](http://evil)"
ITEM = "*big* <b>"


def line_items(count: int = 2, name: str = "Mug") -> tuple[LineItem, ...]:
    """`count` items "Mug 0", "Mug 1", … of 1.00 each."""
    return tuple(LineItem(f"{name} {i}", 1, "1.00") for i in range(count))


def paid_event(
    name: str | None = "Jane D.",
    *,
    items: tuple[LineItem, ...] = (),
    email: str | None = None,
    admin_url: str | None = ADMIN,
    store: str = "acme",
    number: str = "1001",
    order_id: str = "1001",
    currency: str = "EUR",
    total: str = "25.00",
    at: datetime = AT,
    placed: datetime | None = None,
    test: bool = False,
    reason: str | None = None,
    **order: Any,
) -> Event:
    """`order.paid` for order `number` (event and order id `order_id`), seen at `at`; the
    order was created and last updated at `placed` (default: `at`)."""
    placed = at if placed is None else placed
    paid = Order(
        store=store,
        platform="woocommerce",
        id=order_id,
        number=number,
        status="processing",
        created_at=placed,
        updated_at=placed,
        total=total,
        currency=currency,
        customer_name=name,
        customer_email=email,
        # None: a payload without the link, as some stores send (the field is typed str)
        admin_url=admin_url,  # type: ignore[arg-type]
        line_items=items,
        **order,
    )
    return Event("order.paid", store, "woocommerce", order_id, at, at, test, paid.to_json(), reason)
