"""Hypothesis settings for the property tests (issue 12, item 12).

The default run stays short (a few hundred inputs per property, no deadline: the machine is
shared and a slow example is not a bug here); `POLLERD_FAULT_SCALE=nightly`, the switch the
fault tests already use, tries twenty times as many. No example database: a failure prints its
minimal example, which becomes a plain test next to the fix.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

NIGHTLY = os.environ.get("POLLERD_FAULT_SCALE") == "nightly"

settings.register_profile(
    "pollerd",
    max_examples=4000 if NIGHTLY else 200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("pollerd")
