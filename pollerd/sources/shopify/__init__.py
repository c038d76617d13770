"""The Shopify platform plugin (entry point `pollerd.sources: shopify`): its store model
(`options`), rules (`rules`), and two sources on the Admin API, GraphQL (`graphql`, `client`,
`bulk`, `feeds`, `normalize`) and the legacy REST fallback (`rest`, `rest_normalize`), chosen
by the store's `api` key and imported only when such a store is built."""

from __future__ import annotations

from typing import Any

from pollerd.sources.base import Source
from pollerd.sources.plugin import Platform, Sleep
from pollerd.sources.shopify.options import ShopifyStore
from pollerd.sources.shopify.rules import ShopifyRules

__all__ = ["PLATFORM", "Shopify", "ShopifyRules", "ShopifyStore"]


class Shopify(Platform):
    name = "shopify"
    config = ShopifyStore
    terminal = frozenset({"completed", "cancelled", "refunded", "deleted"})

    def build(self, cfg: Any, *, sleep: Sleep) -> Source:
        if cfg.api == "rest":
            from pollerd.sources.shopify.rest import ShopifyRestSource

            return ShopifyRestSource(cfg, sleep=sleep)
        from pollerd.sources.shopify.graphql import ShopifyGraphQLSource

        return ShopifyGraphQLSource(cfg, sleep=sleep)

    def rules(self, cfg: Any | None) -> ShopifyRules:
        return ShopifyRules()


PLATFORM = Shopify()
