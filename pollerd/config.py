"""TOML config → typed, validated settings (DESIGN §7).

Unknown keys are errors: a typo must not silently disable a channel. Every problem becomes a
`ConfigError` whose message names the key (`stores[0].consumer_secret`), the problem and the fix.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from pollerd.secrets import Secret

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> timedelta:
    """`"2s"`, `"5m"`, `"72h"`, `"1d"`, `"500ms"` → timedelta; ValueError explains the format."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    raise ValueError(
        f"{value!r} is not a duration (write a string such as \"2s\", \"5m\", \"72h\" or \"1d\")"
    )


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class DeliveryConfig(_Strict):
    max_attempts: int = Field(25, ge=1)
    dead_after: Duration = timedelta(hours=72)
    backoff_base: Duration = timedelta(seconds=5)
    backoff_max: Duration = timedelta(minutes=30)
    concurrency: int = Field(8, ge=1, le=256)
    send_timeout: Duration = timedelta(seconds=30)


class GlobalConfig(_Strict):
    database: str = "sqlite:///pollerd.db"
    timezone: str = "UTC"
    locale: Literal["en", "zh-CN"] = "en"
    pii_key: Secret | None = None
    retention: Duration = timedelta(hours=72)
    metrics_listen: str | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    delivery: DeliveryConfig = DeliveryConfig()


StoreName = Annotated[str, Field(pattern=r"^[a-z0-9_-]{1,64}$")]
StartFrom = Literal["now"] | datetime


class WooCommerceStore(_Strict):
    name: StoreName
    platform: Literal["woocommerce"]
    url: str
    consumer_key: Secret
    consumer_secret: Secret
    auth: Literal["auto", "basic", "oauth", "query"] = "auto"
    interval: Duration = timedelta(seconds=10)
    overlap: Duration = timedelta(minutes=5)
    start_from: StartFrom = "now"
    pay_on_delivery_methods: list[str] = ["cod"]
    max_requests_per_minute: int = Field(120, ge=1)
    timeout: Duration = timedelta(seconds=30)
    user_agent: str = "pollerd/0.1 (+order alerts; polling wc/v3)"
    sweep_hourly: Duration = timedelta(hours=24)
    sweep_daily: Duration = timedelta(hours=72)
    enabled: bool = True


class ShopifyStore(_Strict):
    """Accepted so one config can describe a whole fleet; polling Shopify is issue 3's work."""

    name: StoreName
    platform: Literal["shopify"]
    shop: str
    access_token: Secret | None = None
    client_id: str | None = None
    client_secret: Secret | None = None
    api: Literal["graphql", "rest"] = "graphql"
    api_version: str = "2026-10"
    base_url: str | None = None
    interval: Duration = timedelta(seconds=2)
    overlap: Duration = timedelta(minutes=5)
    start_from: StartFrom = "now"
    max_budget: float = Field(0.5, gt=0, le=1)
    enabled: bool = True


StoreConfig = Annotated[WooCommerceStore | ShopifyStore, Field(discriminator="platform")]


class ChannelConfig(_Strict):
    """`name` and `type` here; every other key is validated by the channel's own `Options`."""

    model_config = ConfigDict(extra="allow", frozen=True, arbitrary_types_allowed=True)
    name: StoreName
    type: str
    locale: Literal["en", "zh-CN"] | None = None
    timezone: str | None = None


class RouteConfig(_Strict):
    events: list[str] = ["order.*"]
    stores: list[str] = ["*"]
    channels: list[str]
    test_orders: Literal["mark", "skip"] = "mark"


class Settings(_Strict):
    pollerd: GlobalConfig = GlobalConfig()
    stores: list[StoreConfig] = []
    channels: list[ChannelConfig] = []
    routes: list[RouteConfig] = []
    path: Path | None = None  # the file this came from; relative paths resolve against it
    channel_options: dict[str, Any] = {}  # channel name → validated Options instance
