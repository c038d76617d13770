"""The contract suites and what they run on, importable from an installed pollerd, so a
platform or channel that lives in another repository runs the same suites against itself.

- `SourceContract` (`source_suite`): the source contract, a pytest class; a subclass gives the
  `source_rig` fixture. `SourceRig`, the built-in rigs (WooCommerce; Shopify over GraphQL and
  over REST), `SOURCE_RIGS` and `open_rig(platform, variant)` are in `source_rigs`.
- `ChannelContract` (`channel_suite`): the channel contract, a pytest class; a subclass gives
  the `kind` fixture. `ChannelRig`, `Receivers`, the failure tables of every built-in channel
  and `CHANNEL_RIGS` are in `channel_rigs`.
- `paid_event` (`events`): the sample order alert; `send_events` (`sending`): the outbox's
  render-once-send-n loop for one channel; `smtp` (`Inbox`, `smtp_server`, `make_certs`): a
  real SMTP server on loopback; `free_port` (`ports`).

How a plugin supplies its rig, without editing pollerd: it declares it in an entry-point group
beside the plugin's own, the way it declares the plugin:

    [project.entry-points."pollerd.sources"]
    magento = "pollerd_magento:PLATFORM"
    [project.entry-points."pollerd.source_rigs"]
    magento = "pollerd_magento.testing:contract_rig"   # Build -> context manager of SourceRig

    [project.entry-points."pollerd.channels"]
    pigeon = "pollerd_pigeon:PigeonChannel"
    [project.entry-points."pollerd.channel_rigs"]
    pigeon = "pollerd_pigeon.testing:contract_rig"     # Receivers -> ChannelRig

The rigs are found by the same registry helper as the plugins (`pollerd.plugins.Registry`),
so pollerd's own contract tests run an installed plugin too, and the plugin's repository runs
the suite by subclassing it (see each suite's docstring). The rig lives in a module of the
plugin's choosing, so the plugin object the daemon loads carries no test code.

Nothing here assumes a source checkout. pytest (a test extra) is imported by the suite modules
only, aiosmtpd (one too) only when an SMTP server starts, and the names below load lazily
(PEP 562): `pollerd demo` and `pollerd sim` never import this package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOME = {
    "CHANNEL_RIGS": "channel_rigs",
    "ChannelContract": "channel_suite",
    "ChannelRig": "channel_rigs",
    "Failure": "channel_rigs",
    "Receivers": "channel_rigs",
    "SOURCE_RIGS": "source_rigs",
    "SourceContract": "source_suite",
    "SourceRig": "source_rigs",
    "free_port": "ports",
    "open_rig": "source_rigs",
    "paid_event": "events",
    "send_events": "sending",
}

__all__ = [
    "CHANNEL_RIGS",
    "SOURCE_RIGS",
    "ChannelContract",
    "ChannelRig",
    "Failure",
    "Receivers",
    "SourceContract",
    "SourceRig",
    "free_port",
    "open_rig",
    "paid_event",
    "send_events",
]

if TYPE_CHECKING:
    from pollerd_sim.testing.channel_rigs import CHANNEL_RIGS, ChannelRig, Failure, Receivers
    from pollerd_sim.testing.channel_suite import ChannelContract
    from pollerd_sim.testing.events import paid_event
    from pollerd_sim.testing.ports import free_port
    from pollerd_sim.testing.sending import send_events
    from pollerd_sim.testing.source_rigs import SOURCE_RIGS, SourceRig, open_rig
    from pollerd_sim.testing.source_suite import SourceContract


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'pollerd_sim.testing' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pollerd_sim.testing.{module}"), name)
