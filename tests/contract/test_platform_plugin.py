"""A platform added from outside `pollerd/` works end to end: the toy platform of
`tests/support/toyplatform`, installed through a real `pollerd.sources` entry point, is
configured by `platform = "toy"`, checked, polled by `pollerd once`, and its orders become
events delivered to a webhook, while an unknown platform names the installed ones."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pollerd.sources import PLATFORMS
from pollerd_sim import WebhookSink
from pollerd_sim.harness import pollerd, pollerd_env
from tests.support import ROOT, toyplatform
from tests.support.toyplatform import ToySim

CONFIG = """\
[pollerd]
database = "sqlite:///pollerd.db"

[[stores]]
name = "shop"
platform = "{platform}"
url = "{url}"
interval = "1s"
start_from = "2020-01-01T00:00:00Z"

[[channels]]
name = "hook"
type = "webhook"
url = "{sink}"
secret = "env:TEST_HOOK_SECRET"
timeout = "2s"

[[routes]]
events = ["order.*"]
channels = ["hook"]
"""


@pytest.fixture
def toy() -> Iterator[tuple[ToySim, dict[str, str]]]:
    """The toy store, and an environment whose `pollerd` has the toy platform installed."""
    with toyplatform.registered() as folder, ToySim() as sim:
        path = os.pathsep.join([str(ROOT), str(folder), os.environ.get("PYTHONPATH", "")])
        yield sim, pollerd_env(PYTHONPATH=path)


def write(tmp_path: Path, url: str, sink: str, platform: str = "toy") -> Path:
    config = tmp_path / "pollerd.toml"
    config.write_text(CONFIG.format(platform=platform, url=url, sink=sink), encoding="utf-8")
    return config


def test_once_turns_toy_orders_into_events(
    tmp_path: Path, toy: tuple[ToySim, dict[str, str]], sink: WebhookSink
) -> None:
    sim, env = toy
    config = write(tmp_path, sim.url, sink.url)
    unpaid, paid = sim.create_order(), sim.create_order()
    sim.pay(paid)
    checked = pollerd("check", "--config", str(config), env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    result = pollerd("once", "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    expected = {f"shop:{unpaid}:order.created", f"shop:{paid}:order.created",
                f"shop:{paid}:order.paid"}  # fmt: skip
    assert sink.wait_for_ids(expected)
    sim.pay(unpaid)
    assert pollerd("once", "--config", str(config), env=env).returncode == 0
    assert sink.wait_for_ids(expected | {f"shop:{unpaid}:order.paid"})
    assert sorted(str(i) for i in sink.ids()) == sorted(expected | {f"shop:{unpaid}:order.paid"})


def test_an_unknown_platform_names_the_installed_ones(
    tmp_path: Path, toy: tuple[ToySim, dict[str, str]], sink: WebhookSink
) -> None:
    sim, env = toy
    config = write(tmp_path, sim.url, sink.url, platform="magento")
    result = pollerd("check", "--config", str(config), env=env)
    assert result.returncode == 78
    assert 'stores[0].platform: must be "shopify" or "toy" or "woocommerce"' in result.stderr


def test_the_registry_names_the_known_platforms_and_keeps_built_ins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unknown name lists what is installed; an installed package cannot take a built-in's
    name; an object that is not a `Platform` is refused with the same kind of error."""
    info = tmp_path / "impostor-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: impostor\nVersion: 0\n")
    (info / "entry_points.txt").write_text(
        "[pollerd.sources]\n"
        "woocommerce = tests.support.toyplatform:PLATFORM\n"
        "broken = tests.support.toyplatform:ToySim\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    PLATFORMS.forget()
    try:
        assert type(PLATFORMS.load("woocommerce")).__name__ == "WooCommerce"
        with pytest.raises(KeyError) as unknown:
            PLATFORMS.load("magento")
        assert str(unknown.value) == "no platform 'magento'; known: broken, shopify, woocommerce"
        with pytest.raises(KeyError, match=r"platform 'broken' \(.*\) is not a pollerd Platform"):
            PLATFORMS.load("broken")
    finally:
        monkeypatch.undo()
        PLATFORMS.forget()
