"""The keys of a `platform = "shopify"` store table (checked like every config table: unknown
keys are errors, each problem names its fix)."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, model_validator

from pollerd.config.models import StoreConfig
from pollerd.config.types import (
    EXAMPLE,
    Interval,
    Overlap,
    Secret,
    StartFrom,
    StoreName,
    Sweep,
    Timeout,
    invalid,
)

__all__ = ["ShopifyStore"]


class ShopifyStore(StoreConfig):
    """A Shopify store, polled through the GraphQL Admin API (or REST, the legacy fallback)."""

    name: StoreName
    platform: Literal["shopify"]
    shop: str
    access_token: Secret | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    api: Literal["graphql", "rest"] = "graphql"
    api_version: str = "2026-10"
    base_url: str | None = None
    interval: Interval = timedelta(seconds=2)
    overlap: Overlap = timedelta(minutes=5)
    start_from: StartFrom = "now"
    max_budget: float = Field(0.5, gt=0, le=1)
    # `pollerd backfill`'s share of the restore rate; it never drinks the bucket below what the
    # live pass needs (`ratelimit.backfill_keep`), so it may be well above max_budget.
    backfill_max_budget: float = Field(0.9, gt=0, le=1)
    timeout: Timeout = timedelta(seconds=30)
    user_agent: str = "pollerd/0.1 (+order alerts; polling Shopify Admin API)"
    sweep_hourly: Sweep = timedelta(hours=24)
    sweep_daily: Sweep = timedelta(hours=72)
    deletions: bool = True  # read the events feed for destroyed orders (2024-10+)
    disputes: bool = True  # read Shopify Payments disputes (read_shopify_payments_disputes)
    enabled: bool = True

    @model_validator(mode="after")
    def _has_credentials(self) -> ShopifyStore:
        if self.access_token is None and (self.client_id is None or self.client_secret is None):
            fix = f"add access_token, or client_id + client_secret; {EXAMPLE}"
            raise invalid("missing", fix, key="access_token")
        return self
