"""The source contract suite (`pollerd_sim.testing.SourceContract`) over every platform the
`pollerd.sources` entry points register, each on every rig it declares (`pollerd.source_rigs`;
Shopify has two: GraphQL and REST). The toy platform of `tests/support/toyplatform` is among
them, found the way a third-party plugin is: its platform and its rig through real entry
points, nothing under `pollerd/` or `pollerd_sim/` naming it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pollerd.sources import PLATFORMS
from pollerd_sim.testing.source_rigs import NoRig, SourceRig, open_rig, variants
from pollerd_sim.testing.source_suite import SourceContract
from tests.support import toyplatform

with toyplatform.registered():
    REGISTERED = sorted(PLATFORMS.names())
    VARIANTS = [pytest.param(v, id=v[1]) for v in variants(REGISTERED)]


def test_the_toy_platform_is_registered_through_its_entry_point() -> None:
    assert REGISTERED == ["shopify", "toy", "woocommerce"]


class TestEverySource(SourceContract):
    @pytest.fixture(params=VARIANTS)
    def source_rig(self, request: pytest.FixtureRequest) -> Iterator[SourceRig]:
        platform, variant = request.param
        with toyplatform.registered():
            try:
                with open_rig(platform, variant) as rig:
                    yield rig
            except NoRig as exc:
                pytest.fail(str(exc))
