"""Simulators for tests, benchmarks, `pollerd demo` and `pollerd sim`: a separate top-level
package, never imported by the daemon itself.

- `WooSim`: a WooCommerce 10.0.2 store on loopback, measured quirks included;
- `ShopSim`: a Shopify Admin API (GraphQL, REST, bulk operations) on loopback;
- `OrderStream`: a seeded, realistic flow of orders and their follow-ups for a `WooSim`;
- `WebhookSink`: a loopback webhook receiver with switchable failure modes; `HangingReceiver`:
  one that never answers; `ChatSim`: the chat services (WeCom, DingTalk, Feishu, ...);
- `serve()`: the blocking `pollerd sim` entry point.

Names load lazily (PEP 562): `pollerd demo` imports the store simulators without the chat ones,
and `pollerd sim --platform woocommerce` without graphql-core's Shopify schema.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOME = {
    "ChatSim": "chat",
    "HangingReceiver": "sink",
    "OrderStream": "stream",
    "Receipt": "sink",
    "ShopSim": "shopify",
    "StreamAction": "stream",
    "Transition": "wc_orders",
    "UnknownOrder": "wc_orders",
    "WebhookSink": "sink",
    "WooSim": "woocommerce",
    "serve": "woocommerce",
    "serve_shopify": "shopify",
}

__all__ = [
    "ChatSim",
    "HangingReceiver",
    "OrderStream",
    "Receipt",
    "ShopSim",
    "StreamAction",
    "Transition",
    "UnknownOrder",
    "WebhookSink",
    "WooSim",
    "serve",
    "serve_shopify",
]

if TYPE_CHECKING:
    from pollerd_sim.chat import ChatSim
    from pollerd_sim.shopify import ShopSim, serve_shopify
    from pollerd_sim.sink import HangingReceiver, Receipt, WebhookSink
    from pollerd_sim.stream import OrderStream, StreamAction
    from pollerd_sim.wc_orders import Transition, UnknownOrder
    from pollerd_sim.woocommerce import WooSim, serve


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'pollerd_sim' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pollerd_sim.{module}"), name)
