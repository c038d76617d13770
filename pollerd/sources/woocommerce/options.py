"""The keys of a `platform = "woocommerce"` store table (checked like every config table:
unknown keys are errors, each problem names its fix)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal
from urllib.parse import urlunsplit

from pydantic import AfterValidator, Field

from pollerd.config.models import StoreConfig
from pollerd.config.types import (
    Duration,
    Interval,
    Overlap,
    Secret,
    StartFrom,
    StoreName,
    Sweep,
    Timeout,
    http_address,
    invalid,
)

__all__ = ["WooCommerceStore", "site_url"]

_API_PATHS = ("/wp-json", "/wp-admin", "/index.php", "/wp-login.php", "/xmlrpc.php")


def site_url(value: str) -> str:
    """The WordPress site address without a trailing `/` (sources append the API path). The
    URL is never echoed whole: a pasted API URL may carry the keys in its query string."""
    parts = http_address(value, "https://shop.example.com")
    if parts.username or parts.password:
        raise invalid("must not contain a user or password", "keys go in consumer_key/_secret")
    path = parts.path.rstrip("/")
    for marker in _API_PATHS:
        at = path.lower().find(marker)
        if at >= 0:
            site = urlunsplit((parts.scheme, parts.netloc, path[:at], "", ""))
            fix = f"give the site address, not the API URL: {site}"
            raise invalid(f"points into WordPress ({marker}), not at the site", fix)
    if parts.query or parts.fragment:
        fix = 'give the site address only, e.g. "https://shop.example.com"'
        raise invalid("must not have a query string", fix)
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class WooCommerceStore(StoreConfig):
    """A WooCommerce store, polled through the wc/v3 REST API."""

    name: StoreName
    platform: Literal["woocommerce"]
    url: Annotated[str, AfterValidator(site_url)]
    consumer_key: Secret
    consumer_secret: Secret
    auth: Literal["auto", "basic", "oauth", "query"] = "auto"
    interval: Interval = timedelta(seconds=10)
    overlap: Overlap = timedelta(minutes=5)
    start_from: StartFrom = "now"
    pay_on_delivery_methods: list[str] = ["cod"]  # noqa: RUF012 (pydantic copies defaults)
    max_requests_per_minute: int = Field(120, ge=1)
    # `pollerd backfill`'s own budget, on top of the live pass's: a backfill running beside
    # the daemon sends up to this many more requests a minute to the site (the two add up).
    backfill_requests_per_minute: int = Field(240, ge=1)
    timeout: Timeout = timedelta(seconds=30)
    user_agent: str = "pollerd/0.1 (+order alerts; polling wc/v3)"
    sweep_hourly: Sweep = timedelta(hours=24)
    sweep_daily: Sweep = timedelta(hours=72)
    # First run: orders modified this long before the start point are recorded (silently) so a
    # later change without a date of its own (a cancellation) is diffed against a known state.
    baseline_horizon: Duration = timedelta(days=90)
    enabled: bool = True
