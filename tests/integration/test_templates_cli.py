"""User template overrides as a user meets them: `[pollerd] templates = "tpl"` next to the config,
checked at load (exit 78 naming file and line), rendered against every event type by
`pollerd check` (exit 1 listing each problem), and used for real alerts by `pollerd once`.
Real `pollerd` subprocesses against the WooCommerce simulator, as in test_cli.py."""

from __future__ import annotations

from pathlib import Path

from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import pollerd, write_config

CONSOLE = """
[[channels]]
name = "out"
type = "console"
[[routes]]
events = ["order.*"]
channels = ["out"]
"""


def config_with_templates(
    tmp_path: Path, sim: WooSim, sink: WebhookSink, files: dict[str, str] | None
) -> Path:
    """The harness config plus a console channel and `templates = "tpl"` (relative to the
    config file); `files` are written into tpl/ (None: no folder at all)."""
    config = write_config(tmp_path, sim.url, sink.url, extra=CONSOLE)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[pollerd]\n", '[pollerd]\ntemplates = "tpl"\n', 1), "utf-8")
    if files is not None:
        for name, body in files.items():
            path = tmp_path / "tpl" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
    return config


def test_a_missing_templates_folder_is_a_config_error(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    config = config_with_templates(tmp_path, sim, sink, None)
    for command in ("check", "once"):
        result = pollerd(command, "--config", str(config))
        assert result.returncode == 78, (command, result.stdout, result.stderr)
        assert f"pollerd.templates: {tmp_path / 'tpl'} is not a folder" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_template_syntax_error_names_file_and_line(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    files = {"en/order.paid.text.j2": "{% set headline %}\nPaid {{ number }\n{% endset %}\n"}
    config = config_with_templates(tmp_path, sim, sink, files)
    for command in ("check", "once", "run"):
        result = pollerd(command, "--config", str(config))
        assert result.returncode == 78, (command, result.stdout, result.stderr)
        where = tmp_path / "tpl" / "en" / "order.paid.text.j2"
        assert f"pollerd.templates: {where}:2: " in result.stderr
        assert "Traceback" not in result.stderr
    assert not sim.request_log  # nothing was polled with a broken config


def test_check_renders_every_user_template_and_lists_the_problems(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    files = {
        "en/order.paid.text.j2": "{% set headline %}Paid {{ totl }}{% endset %}\n"
        "{% extends layout %}\n",
        "zh-CN/dispute.updated.wecom.j2": "争议 {{ number }}\n{{ dispute.statu }}\n",
        "en/order.created.j2": "{{ ''.__class__.__mro__ }}\n",
        # Fine: must not be reported.
        "zh-CN/order.created.wecom.j2": "{% set headline %}新单 {{ number }}{% endset %}"
        "{% extends layout %}\n",
    }
    config = config_with_templates(tmp_path, sim, sink, files)
    result = pollerd("check", "--config", str(config))
    assert result.returncode == 1, result.stdout + result.stderr
    folder = tmp_path / "tpl"
    lines = result.stdout.splitlines()
    assert f"✗ templates: {folder}: 3 problem(s)" in lines
    assert f"  {folder}/en/order.paid.text.j2:1: UndefinedError: 'totl' is undefined" in lines
    assert (
        f"  {folder}/zh-CN/dispute.updated.wecom.j2:2: UndefinedError: "
        "'dict object' has no attribute 'statu'"
    ) in lines
    assert any(
        line.startswith(f"  {folder}/en/order.created.j2:1: SecurityError: ") for line in lines
    )
    assert "zh-CN/order.created.wecom.j2" not in result.stdout
    assert "✓ shop: " in result.stdout  # the stores are still probed
    assert "Traceback" not in result.stderr


def test_check_passes_good_templates(tmp_path: Path, sim: WooSim, sink: WebhookSink) -> None:
    files = {
        "zh-CN/order.paid.wecom.j2": "{% set headline %}收款 {{ number }} {{ total|money }}"
        "{% endset %}{% extends layout %}\n",
        "en/digest.j2": "{{ count }} alerts: {{ totals|join(', ') }}\n",
        "layout/sms.j2": "{{ b(number) }} {{ when }} {{ link(admin_url) }}\n",
    }
    config = config_with_templates(tmp_path, sim, sink, files)
    result = pollerd("check", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"✓ templates: {tmp_path / 'tpl'}: every event renders" in result.stdout


def test_once_sends_the_user_wording_through_the_console(
    tmp_path: Path, sim: WooSim, sink: WebhookSink
) -> None:
    files = {
        "en/order.created.text.j2": "{% set headline %}Ka-ching! {{ number }} from "
        "{{ customer.name }}{% endset %}{% extends layout %}\n",
    }
    config = config_with_templates(tmp_path, sim, sink, files)
    order = sim.create_order(
        payment_method="stripe", set_paid=True, first_name="<b>Ada</b>", last_name="Lovelace"
    )
    result = pollerd("once", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    # The override, escaped like any value: the customer's "<b>" is not a tag.
    assert f"[shop] Ka-ching! #{order} from ＜b＞Ada＜/b＞ L. · $25.00" in result.stdout
    # Only that one file is overridden: order.paid keeps the built-in words.
    assert f"[shop] Order #{order} paid · $25.00" in result.stdout
    assert "Ka-ching!" not in result.stderr and "Traceback" not in result.stderr
    assert sink.wait_for(2, timeout=10)  # the webhook still gets the JSON, untouched
