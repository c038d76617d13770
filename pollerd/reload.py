"""SIGHUP: what a new config file changes, worked out before anything running is touched.

`ReloadPlan.build` re-reads the file the process started with, validates it, and builds the
new channels and a fresh sync (and source) for every store added or changed. Any problem raises
and closes what was built, so a file that does not validate changes nothing. Applying the plan
is the owners' job, each through its own method: `Runtime.reconfigure` (settings, channels,
routes, passed on to `Deliverer.reconfigure` and `StoreSync.reroute`), `Runtime.retire` and
`Runtime.adopt` (stores); `pollerd.daemon.Service` only orders those calls around its scheduler
and its delivery task.
"""

from __future__ import annotations

from dataclasses import dataclass

from loguru import logger

from pollerd.channels.base import Channel
from pollerd.config import Settings, load
from pollerd.errors import ConfigError
from pollerd.runtime import Runtime, build_channels
from pollerd.sync import StoreSync

RESTART_KEYS = (
    "database",
    "listen",
    "public_url",
    "unsubscribe_secret",
    "metrics_listen",
    "pii_key",
    "log_level",
)
"""`[pollerd]` keys a reload cannot apply (open connections, sockets, the key ring, the log
sink): a change is logged and the running value kept until the next restart."""


@dataclass
class ReloadPlan:
    """What a new config changes, built completely before anything running is touched."""

    settings: Settings
    channels: dict[str, Channel]
    start: dict[str, StoreSync]  # stores added or changed: a fresh sync and source each
    retire: list[str]  # stores removed or changed: their running sync stops
    added: list[str]
    changed: list[str]
    removed: list[str]
    kept_keys: list[str]  # [pollerd] keys changed in the file that need a restart

    @classmethod
    async def build(cls, runtime: Runtime) -> ReloadPlan:
        """Load and validate the file and build the new channels and sources; raises (and
        closes what it built) on any problem, before anything running is touched."""
        old = runtime.settings
        if old.path is None:
            raise ConfigError("", "this run has no config file to re-read", "restart pollerd")
        new = load(old.path, named_by="the file this pollerd started with")
        kept = [
            key for key in RESTART_KEYS if getattr(new.pollerd, key) != getattr(old.pollerd, key)
        ]
        if kept:
            pollerd = new.pollerd.model_copy(
                update={key: getattr(old.pollerd, key) for key in kept}
            )
            new = new.model_copy(update={"pollerd": pollerd})
        running = {name: sync.cfg for name, sync in runtime.syncs.items()}
        wanted = {cfg.name: cfg for cfg in new.stores if cfg.enabled}
        added = [name for name in wanted if name not in running]
        removed = [name for name in running if name not in wanted]
        changed = [name for name in wanted if name in running and wanted[name] != running[name]]
        channels: dict[str, Channel] = {}
        start: dict[str, StoreSync] = {}
        try:
            channels = build_channels(new, runtime.http, runtime.store)
            for name in added + changed:
                start[name] = runtime.make_sync(wanted[name], new)
        except BaseException:
            for channel in channels.values():
                await channel.close()
            for sync in start.values():
                await sync.source.aclose()
            raise
        return cls(
            settings=new,
            channels=channels,
            start=start,
            retire=removed + changed,
            added=added,
            changed=changed,
            removed=removed,
            kept_keys=kept,
        )

    def warn_kept(self) -> None:
        for key in self.kept_keys:
            logger.warning(
                "reload: [pollerd] {} changed; it takes effect at the next restart "
                "(the running value stays)",
                key,
            )
