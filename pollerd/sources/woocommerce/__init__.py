"""The WooCommerce platform plugin (entry point `pollerd.sources: woocommerce`): its store
model (`options`), rules (`rules`), and the wc/v3 source (`client`, `auth`, `normalize`),
which is imported only when a WooCommerce store is built."""

from __future__ import annotations

from typing import Any

from pollerd.sources.base import Source
from pollerd.sources.plugin import Platform, Sleep
from pollerd.sources.woocommerce.options import WooCommerceStore
from pollerd.sources.woocommerce.rules import WooRules, pay_rules

__all__ = ["PLATFORM", "WooCommerce", "WooCommerceStore", "WooRules"]


class WooCommerce(Platform):
    name = "woocommerce"
    config = WooCommerceStore
    # `trash` and `checkout-draft` are WooCommerce's own: a trashed order can still be restored,
    # but the trash listing watches it, not the existence check; drafts are never orders.
    terminal = frozenset(
        {"completed", "cancelled", "refunded", "trash", "deleted", "checkout-draft"}
    )

    def build(self, cfg: Any, *, sleep: Sleep) -> Source:
        from pollerd.sources.woocommerce.client import WooCommerceSource

        return WooCommerceSource(cfg, sleep=sleep)

    def rules(self, cfg: Any | None) -> WooRules:
        return WooRules() if cfg is None else pay_rules(cfg.pay_on_delivery_methods)


PLATFORM = WooCommerce()
