"""Simulators for tests, benchmarks, `pollerd demo` and `pollerd sim`.

- `WooSim`: a WooCommerce 10.0.2 store on loopback, measured quirks included;
- `OrderStream`: a seeded, realistic flow of orders and their follow-ups for a `WooSim`;
- `WebhookSink`: a loopback webhook receiver with switchable failure modes; `HangingReceiver`:
  one that never answers;
- `serve()`: the blocking `pollerd sim` entry point.
"""

from pollerd.sim.chat import ChatSim
from pollerd.sim.shopify import ShopSim, serve_shopify
from pollerd.sim.sink import HangingReceiver, Receipt, WebhookSink
from pollerd.sim.stream import OrderStream, StreamAction
from pollerd.sim.wc_orders import Transition, UnknownOrder
from pollerd.sim.woocommerce import WooSim, serve

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
