"""The channel contract suite (`pollerd_sim.testing.ChannelContract`) over every channel type
the `pollerd.channels` entry points register: a channel gets the suite by being registered, and
a registered type without a contract rig fails, naming what to add."""

from __future__ import annotations

import pytest

from pollerd.channels import known_types
from pollerd_sim.testing.channel_rigs import CHANNEL_RIGS
from pollerd_sim.testing.channel_suite import ChannelContract

REGISTERED = sorted(known_types())


class TestEveryChannel(ChannelContract):
    @pytest.fixture(params=REGISTERED)
    def kind(self, request: pytest.FixtureRequest) -> str:
        return str(request.param)


def test_every_rig_is_for_a_registered_type() -> None:
    """The other direction: a rig for a type nobody registers is dead weight."""
    rigs = set(CHANNEL_RIGS.names())
    assert rigs <= set(REGISTERED), rigs - set(REGISTERED)
