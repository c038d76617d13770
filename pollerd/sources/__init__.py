"""Platform registry: built-in and third-party platforms load the same way, through the
`pollerd.sources` entry-point group, lazily (a platform's client is imported only when one of
its stores is built). Each names a `Platform` (`sources.plugin`); `Source` and the optional
capabilities are in `sources.base`."""

from __future__ import annotations

from pollerd.plugins import Registry
from pollerd.sources.plugin import Platform

__all__ = ["BUILTIN", "PLATFORMS", "platform"]

BUILTIN = {
    "woocommerce": "pollerd.sources.woocommerce:PLATFORM",
    "shopify": "pollerd.sources.shopify:PLATFORM",
}

PLATFORMS: Registry[Platform] = Registry(
    "pollerd.sources",
    noun="platform",
    builtin=BUILTIN,
    accept=lambda found: isinstance(found, Platform),
    what="pollerd Platform",
)


def platform(name: str) -> Platform:
    """The plugin of platform `name`; KeyError (`UnknownPlugin`) names the known ones."""
    return PLATFORMS.load(name)
