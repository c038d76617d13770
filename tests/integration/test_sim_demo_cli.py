"""What a newcomer trips on in `demo`, `sim` and config.example.toml: help that says what the
command does, options that are refused rather than silently ignored, an example whose ports
and defaults match the program. Real `pollerd` subprocesses."""

from __future__ import annotations

import inspect
import re
import socket
import subprocess
import sys
import tomllib

from pollerd_sim import serve, serve_shopify
from pollerd_sim.harness import pollerd, pollerd_env
from tests.support import ROOT


def test_demo_help_names_both_simulated_platforms() -> None:
    shown = pollerd("demo", "--help")
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    assert "WooCommerce" in text and "Shopify" in text, text


def test_sim_rate_has_one_unit_in_help_and_banner() -> None:
    helped = " ".join(pollerd("sim", "--help").stdout.split())
    assert "actions per minute" in helped and "orders per minute" not in helped, helped
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pollerd", "sim", "--port", str(port), "--rate", "6"],
        stdout=subprocess.PIPE,
        text=True,
        env=pollerd_env(),
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline() for _ in range(4)]  # printed at once, flushed
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert any("6 actions per minute" in line for line in banner), banner


def test_sim_refuses_options_the_platform_does_not_take() -> None:
    for args, named in (
        (["--platform", "shopify", "--key", "ck_x"], "--key"),
        (["--platform", "shopify", "--secret", "cs_x"], "--secret"),
        (["--platform", "shopify", "--site-timezone", "Asia/Tokyo"], "--site-timezone"),
        (["--platform", "woocommerce", "--token", "shpat_x"], "--token"),
    ):
        refused = pollerd("sim", "--port", "1", *args, timeout=60)
        assert refused.returncode == 2, (args, refused.stdout, refused.stderr)
        assert named in refused.stderr and "Traceback" not in refused.stderr, refused.stderr


def test_example_config_matches_the_simulator_ports_and_leaves_pii_key_optional() -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    shopify = text[text.index('platform = "shopify"') :]
    port = re.search(r'base_url = "http://127\.0\.0\.1:(\d+)"', shopify)
    assert port is not None
    assert int(port.group(1)) == inspect.signature(serve_shopify).parameters["port"].default
    head = text[: text.index('platform = "shopify"')]
    woo = re.search(r'url = "http://127\.0\.0\.1:(\d+)"', head)
    if woo is not None:
        assert int(woo.group(1)) == inspect.signature(serve).parameters["port"].default
    # README: "if you don't need that, leave `pii_key` unset"; the example must not require it.
    assert "pii_key" not in tomllib.loads(text)["pollerd"]
    assert re.search(r"^# pii_key = ", text, re.M)
