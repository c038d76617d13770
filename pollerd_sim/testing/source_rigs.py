"""The source contract's rigs: a platform's source pointed at its simulator, and the platform's
words for "new order" and "paid".

A rig factory takes `build` (store config → `Source`, the registry's `Platform.build`, so the
entry point is what is tested) and is a context manager yielding a `SourceRig` while the
simulator runs. A platform's rigs are one factory or a mapping variant → factory (Shopify runs
the suite once over GraphQL and once over REST). The built-in platforms' rigs are below, listed
in `BUILTIN`; a platform of another distribution declares its own in the `pollerd.source_rigs`
entry-point group (`<platform> = "<module>:<factory or mapping>"`), and `SOURCE_RIGS` (the
same registry helper that finds the platforms) finds both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pollerd.plugins import Registry, UnknownPlugin
from pollerd.sources import PLATFORMS
from pollerd.sources.base import Source
from pollerd_sim.harness import KEY, SECRET, SHOPIFY_TOKEN

Build = Callable[[Any], Source]


@dataclass
class SourceRig:
    """A simulator, a source on it, and the platform's words for "new order" and "paid"."""

    make: Callable[[], Source]
    create: Callable[[], int]
    pay: Callable[[int], None]
    paid_status: str


RigFactory = Callable[[Build], contextlib.AbstractContextManager[SourceRig]]


@contextlib.contextmanager
def woocommerce(build: Build) -> Iterator[SourceRig]:
    from pollerd.sources.woocommerce import WooCommerceStore
    from pollerd_sim.woocommerce import WooSim

    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim:
        cfg = WooCommerceStore.model_validate(
            {
                "name": "shop",
                "platform": "woocommerce",
                "url": sim.url,
                "consumer_key": KEY,
                "consumer_secret": SECRET,
                "max_requests_per_minute": 6000,
            }
        )
        yield SourceRig(
            make=lambda: build(cfg),
            create=lambda: sim.create_order(payment_method="stripe"),
            pay=lambda oid: sim.set_status(oid, "processing"),
            paid_status="processing",
        )


def _shopify(api: str) -> RigFactory:
    @contextlib.contextmanager
    def rig(build: Build) -> Iterator[SourceRig]:
        from pollerd.sources.shopify import ShopifyStore
        from pollerd_sim.shopify import ShopSim

        with ShopSim(access_token=SHOPIFY_TOKEN) as sim:
            cfg = ShopifyStore.model_validate(
                {
                    "name": "shop",
                    "platform": "shopify",
                    "shop": "acme.myshopify.com",
                    "base_url": sim.url,
                    "access_token": SHOPIFY_TOKEN,
                    "api": api,
                }
            )
            yield SourceRig(
                make=lambda: build(cfg),
                create=lambda: sim.create_order(financial="PENDING"),
                pay=sim.pay,
                paid_status="paid",
            )

    return rig


SHOPIFY: Mapping[str, RigFactory] = {
    "shopify-graphql": _shopify("graphql"),
    "shopify-rest": _shopify("rest"),
}

BUILTIN = {
    "woocommerce": "pollerd_sim.testing.source_rigs:woocommerce",
    "shopify": "pollerd_sim.testing.source_rigs:SHOPIFY",
}
"""platform → its rigs, for the built-in platforms (others: the `pollerd.source_rigs` entry
points)."""

SOURCE_RIGS: Registry[RigFactory | Mapping[str, RigFactory]] = Registry(
    "pollerd.source_rigs",
    noun="source contract rig",
    builtin=BUILTIN,
    accept=lambda found: callable(found) or isinstance(found, Mapping),
    what="rig factory or mapping variant -> rig factory",
)


def rigs(platform: str) -> dict[str, RigFactory]:
    """variant → factory of one platform (one variant named after the platform when it has a
    single rig); `UnknownPlugin` when the platform declares none."""
    found = SOURCE_RIGS.load(platform)
    return dict(found) if isinstance(found, Mapping) else {platform: found}


def variants(platforms: Iterable[str]) -> list[tuple[str, str]]:
    """(platform, variant) for every rig of these platforms; a platform without a rig is one
    variant named after it, which `open_rig` fails on, naming what to add."""
    found: list[tuple[str, str]] = []
    for name in platforms:
        try:
            found += [(name, variant) for variant in rigs(name)]
        except UnknownPlugin:
            found.append((name, name))
    return found


class NoRig(LookupError):
    """The platform is registered but declares no rig for the source contract suite."""


@contextlib.contextmanager
def open_rig(platform: str, variant: str | None = None) -> Iterator[SourceRig]:
    """The rig `variant` (default: the platform's only one) of a registered `platform`, its
    source built through the platform registry, for the time of the block."""
    plugin = PLATFORMS.load(platform)
    try:
        factories = rigs(platform)
    except UnknownPlugin:
        raise NoRig(
            f"platform {platform!r} is registered but has no source contract rig: declare one "
            "in the `pollerd.source_rigs` entry-point group (a rig factory, or a mapping "
            "variant -> factory; see pollerd_sim.testing.source_rigs)"
        ) from None
    if variant is None:
        [variant] = factories

    def build(cfg: Any) -> Source:
        return plugin.build(cfg, sleep=asyncio.sleep)

    with factories[variant](build) as rig:
        yield rig
