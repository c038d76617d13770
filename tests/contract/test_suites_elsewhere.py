"""The contract suites as a plugin's own repository runs them: a test module outside pollerd's
tree (a pytester directory, run by a pytest process of its own: no pollerd conftest, no `tests`
package) subclasses the suites of the installed `pollerd_sim.testing`; a plugin without a rig
fails, naming the entry-point group to declare it in; and the daemon's `demo` path never loads
the test support. (A subprocess, not an inline run: pytester drops the modules an inline run
imported, and httpx's map of httpcore's errors would then point at classes nobody raises.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

PLUGIN_TESTS = """
import pytest
from pollerd_sim.testing import ChannelContract, SourceContract, open_rig

class TestConsoleChannel(ChannelContract):
    @pytest.fixture
    def kind(self):
        return "console"

class TestWooCommerceSource(SourceContract):
    @pytest.fixture
    def source_rig(self):
        with open_rig("woocommerce") as rig:
            yield rig
"""


def test_a_plugin_repository_runs_the_suites(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plugin=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    # console: no failure table, credential or rate limit, so three of its five are skipped
    result.assert_outcomes(passed=2 + 6, skipped=3)


def test_a_plugin_without_a_rig_is_told_where_to_declare_one(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "from pollerd_sim.testing import CHANNEL_RIGS, SOURCE_RIGS\n"
        "CHANNEL_RIGS.names = SOURCE_RIGS.names = dict  # as if no rig were declared\n"
    )
    pytester.makepyfile(test_plugin=PLUGIN_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=5 + 6)
    result.stdout.fnmatch_lines(
        [
            "*channel type 'console' is registered but has no contract rig*pollerd.channel_rigs*",
            "*platform 'woocommerce' is registered but has no source contract rig*"
            "pollerd.source_rigs*",
        ],
        consecutive=False,
    )


def test_the_demo_path_does_not_load_the_test_support() -> None:
    """`pollerd demo` imports these (pollerd/demo.py); pytest and aiosmtpd are test extras."""
    code = (
        "import sys\n"
        "from pollerd_sim import OrderStream, ShopSim, WooSim\n"
        "from pollerd_sim.shop_stream import ShopStream\n"
        "import pollerd.demo, pollerd.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith('pollerd_sim.testing')"
        " or m in ('pytest', 'aiosmtpd')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
