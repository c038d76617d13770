"""Secrets (issue 5 item 8, research §C.7): systemd credentials first, then files readable by
their owner only, then environment variables (warned about under systemd); a value never shows
in repr, str, exception messages, pydantic errors or `pollerd check` output."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger
from pydantic import BaseModel, ConfigDict, ValidationError

from pollerd import secrets
from pollerd.config import ConfigErrors, Settings, load
from pollerd.secrets import Secret, known_secret_values, register_all, resolve
from pollerd_sim import WebhookSink, WooSim
from pollerd_sim.harness import HOOK_SECRET, KEY, SECRET, pollerd, pollerd_env, write_config

VALUE = "v4lue-0f-the-secret-7c1d"


@pytest.fixture
def warnings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Warnings logged while resolving; the once-per-name memory starts empty."""
    monkeypatch.setattr(secrets, "_WARNED_ENV", set())
    monkeypatch.delenv("INVOCATION_ID", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    seen: list[str] = []
    handler = logger.add(lambda m: seen.append(m.record["message"]), level="WARNING")
    yield seen
    logger.remove(handler)


def _write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def _credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **creds: str) -> Path:
    folder = tmp_path / "creds"
    folder.mkdir()
    for name, value in creds.items():
        _write(folder / name, value + "\n", 0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(folder))
    return folder


# never printed ------------------------------------------------------------------------------


def test_secret_is_masked_in_every_rendering() -> None:
    inline, referenced = Secret(VALUE), Secret(VALUE, "env:WC_SECRET")
    for secret in (inline, referenced):
        shown = [repr(secret), str(secret), f"{secret}", f"{secret!s}", f"{secret:>40}",
                 "%s" % secret, repr([secret]), repr({"k": secret})]  # fmt: skip  # noqa: UP031
        for text in shown:
            assert VALUE not in text, text
    assert repr(referenced) == "Secret('env:WC_SECRET')" and repr(inline) == "Secret('****')"
    assert inline.get() == VALUE and inline.inline and not referenced.inline


def test_secret_in_a_model_is_masked_in_repr_and_json_dumps() -> None:
    class Options(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        token: Secret

    options = Options(token=VALUE)  # type: ignore[arg-type]
    assert VALUE not in repr(options) and VALUE not in str(options)
    assert json.loads(options.model_dump_json()) == {"token": "****"}
    assert options.model_dump(mode="json") == {"token": "****"}
    assert options.model_dump()["token"].get() == VALUE  # python mode keeps the Secret


def test_pydantic_errors_never_echo_a_literal_secret(tmp_path: Path) -> None:
    """A literal that fails a later check (unsubscribe_secret needs 16 characters) is the
    field's input; pydantic would print it as `input_value=` without `hide_input_in_errors`."""
    short = "sh0rt-lit3ral"
    data = {"pollerd": {"listen": "127.0.0.1:8080", "unsubscribe_secret": short}}
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate(data)
    assert "unsubscribe_secret" in str(caught.value) and short not in str(caught.value)
    config = tmp_path / "pollerd.toml"
    config.write_text(f'[pollerd]\nlisten = "127.0.0.1:8080"\nunsubscribe_secret = "{short}"\n')
    with pytest.raises(ConfigErrors) as errors:
        load(config)
    message = str(errors.value)
    assert "pollerd.unsubscribe_secret: is shorter than 16 characters" in message
    assert short not in message and short not in repr(errors.value)


def test_a_numeric_secret_is_not_echoed_either() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({"pollerd": {"pii_key": 123456789012}})
    assert "123456789012" not in str(caught.value)


# credentials first ----------------------------------------------------------------------------


def test_credential_is_read_from_the_credentials_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warnings: list[str]
) -> None:
    _credentials(tmp_path, monkeypatch, wc_secret=VALUE)
    for ref in ("credential:wc_secret", "cred:wc_secret"):
        secret = resolve(ref)
        assert secret.get() == VALUE and secret.ref == ref
    assert not warnings


def test_missing_credential_lists_what_systemd_did_provide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warnings: list[str]
) -> None:
    _credentials(tmp_path, monkeypatch, shopify_token=VALUE, wc_key=VALUE)
    with pytest.raises(LookupError) as caught:
        resolve("credential:wc_secret")
    assert str(caught.value) == (
        "credential wc_secret is not in $CREDENTIALS_DIRECTORY (present: shopify_token, wc_key; "
        "add LoadCredential=wc_secret:/path to the unit)"
    )
    assert VALUE not in str(caught.value)


def test_credential_without_systemd_says_how_to_get_one(warnings: list[str]) -> None:
    with pytest.raises(LookupError, match=r"LoadCredential=wc:/path, or use file:/path"):
        resolve("credential:wc")
    with pytest.raises(LookupError, match="not valid"):
        resolve("credential:../etc/shadow")


def test_a_credential_wins_over_the_environment_variable_of_the_same_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warnings: list[str]
) -> None:
    monkeypatch.setenv("WC_SECRET", "from-the-environment")
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")
    assert resolve("env:WC_SECRET").get() == "from-the-environment"
    assert len(warnings) == 1
    _credentials(tmp_path, monkeypatch, WC_SECRET=VALUE)
    secret = resolve("env:WC_SECRET")
    assert secret.get() == VALUE and secret.ref == "env:WC_SECRET"
    assert len(warnings) == 1  # the credential is what systemd recommends: nothing to warn


# environment: warned under systemd --------------------------------------------------------------


def test_env_secret_under_systemd_is_warned_once_per_name(
    monkeypatch: pytest.MonkeyPatch, warnings: list[str]
) -> None:
    monkeypatch.setenv("WC_SECRET", VALUE)
    monkeypatch.setenv("HOOK_SECRET", VALUE + "-hook")
    assert resolve("env:WC_SECRET").get() == VALUE
    assert not warnings  # not under systemd: environment variables are fine
    monkeypatch.setenv("INVOCATION_ID", "0123456789abcdef")
    for _ in range(3):  # e.g. reloads on SIGHUP
        resolve("env:WC_SECRET")
    resolve("env:HOOK_SECRET")
    assert len(warnings) == 2
    assert "secret env:WC_SECRET is read from the environment under systemd" in warnings[0]
    assert "LoadCredential=WC_SECRET:/etc/pollerd/WC_SECRET" in warnings[0]
    assert "env:HOOK_SECRET" in warnings[1]
    assert all(VALUE not in warning for warning in warnings)


def test_missing_env_var_names_the_variable_and_the_alternatives(warnings: list[str]) -> None:
    with pytest.raises(LookupError) as caught:
        resolve("env:POLLERD_TEST_NOT_SET_ANYWHERE")
    assert str(caught.value) == (
        "env var POLLERD_TEST_NOT_SET_ANYWHERE is not set (export it, or use file:/path or "
        "credential:NAME)"
    )


# files: owner only --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_file_is_read_and_stripped(tmp_path: Path, mode: int) -> None:
    path = _write(tmp_path / "wc.secret", f"  {VALUE}\n", mode)
    secret = resolve(f"file:{path}")
    assert secret.get() == VALUE and secret.ref == f"file:{path}"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o620])
def test_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = _write(tmp_path / "wc.secret", VALUE, mode)
    with pytest.raises(LookupError) as caught:
        resolve(f"file:{path}")
    assert str(caught.value) == (
        f"secret file {path} is readable by group or others (mode {mode:04o}); run "
        f"`chmod 600 {path}`"
    )
    path.chmod(0o600)  # the fix the message gives works
    assert resolve(f"file:{path}").get() == VALUE


def test_file_problems_name_the_file_never_its_content(tmp_path: Path) -> None:
    empty = _write(tmp_path / "empty", "\n", 0o600)
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe" + VALUE.encode())
    binary.chmod(0o600)
    cases = {
        f"file:{tmp_path / 'missing'}": f"cannot read secret file {tmp_path / 'missing'}: No "
        "such file or directory (create it, readable by pollerd only: chmod 600)",
        f"file:{empty}": f"secret file {empty} is empty (write the secret into it)",
        f"file:{binary}": f"secret file {binary} is not UTF-8 text (write the secret as text)",
    }
    for ref, expected in cases.items():
        with pytest.raises(LookupError) as caught:
            resolve(ref)
        assert str(caught.value) == expected and VALUE not in str(caught.value)


def test_config_with_a_readable_secret_file_fails_naming_key_file_and_fix(tmp_path: Path) -> None:
    path = _write(tmp_path / "wc.secret", VALUE, 0o644)
    config = tmp_path / "pollerd.toml"
    config.write_text(
        "[[stores]]\nname = \"acme\"\nplatform = \"woocommerce\"\n"
        "url = \"https://shop.example.com\"\nconsumer_key = \"ck_inline_abcdef\"\n"
        f"consumer_secret = \"file:{path}\"\n"
    )  # fmt: skip
    with pytest.raises(ConfigErrors) as caught:
        load(config)
    assert str(caught.value) == (
        f"config: stores[0].consumer_secret: secret file {path} is readable by group or others "
        f"(mode 0644); run `chmod 600 {path}`"
    )
    assert caught.value.exit_code == 78


# registration for the log redactor ----------------------------------------------------------


def test_every_secret_of_loaded_settings_is_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "987654321:AAH" + "x" * 30
    monkeypatch.setenv("REG_HOOK_SECRET", "whsec_" + "R" * 32)
    monkeypatch.setenv("REG_TG_TOKEN", token)
    config = tmp_path / "pollerd.toml"
    config.write_text(
        "[pollerd]\nunsubscribe_secret = \"file:"
        + str(_write(tmp_path / "u", "unsubscribe-secret-0123456789", 0o600)) + "\"\n"
        "[[stores]]\nname = \"acme\"\nplatform = \"shopify\"\nshop = \"acme.myshopify.com\"\n"
        "access_token = \"shpat_registered_0123\"\n"
        "[[channels]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"https://hooks.example.com/x\"\n"
        "secret = \"env:REG_HOOK_SECRET\"\n"
        "[[channels]]\nname = \"tg\"\ntype = \"telegram\"\ntoken = \"env:REG_TG_TOKEN\"\n"
        "chat_id = \"-100123\"\n"
    )  # fmt: skip
    settings = load(config)
    found = {secret.get() for secret in secrets.secrets_in(settings)}
    assert found == {
        "unsubscribe-secret-0123456789",
        "shpat_registered_0123",
        "whsec_" + "R" * 32,
        token,
    }
    assert register_all(settings) == 4
    assert found <= known_secret_values()


def test_url_encoded_forms_are_registered_too() -> None:
    """A secret with `/`, `+`, `&`, `:` or a space is percent-encoded inside a query string."""
    Secret("reg:with/slash+plus&amp space")
    values = known_secret_values()
    assert {
        "reg%3Awith%2Fslash%2Bplus%26amp%20space",
        "reg%3Awith%2Fslash%2Bplus%26amp+space",
    } <= values


def test_short_values_are_not_registered() -> None:
    """A three-letter secret would mask that word in every log line; it is not worth it."""
    Secret("abc")
    assert "abc" not in known_secret_values()


# inline secrets: as safe as the config file ---------------------------------------------------


def test_inline_secret_in_a_world_readable_config_is_warned_about(
    tmp_path: Path, warnings: list[str]
) -> None:
    config = tmp_path / "pollerd.toml"
    config.write_text(
        "[[stores]]\nname = \"acme\"\nplatform = \"woocommerce\"\n"
        "url = \"https://shop.example.com\"\nconsumer_key = \"ck_inline_abcdef\"\n"
        "consumer_secret = \"cs_inline_abcdef\"\n"
    )  # fmt: skip
    config.chmod(0o644)
    load(config)
    assert warnings == [
        f"config {config} holds 2 secret(s) written inline and is readable by group or others "
        f"(mode 0644): run `chmod 600 {config}`, or reference them as credential:NAME, "
        "file:/path or env:NAME"
    ]
    config.chmod(0o600)
    load(config)
    assert len(warnings) == 1
    assert stat.S_IMODE(config.stat().st_mode) == 0o600


# `pollerd check`, a real subprocess ---------------------------------------------------------


def _check(config: Path, **env: str) -> tuple[int, str]:
    result = pollerd("check", "--config", str(config), env=pollerd_env(**env))
    return result.returncode, result.stdout + result.stderr


def test_check_output_never_shows_a_secret_from_any_source(
    tmp_path: Path, sink: WebhookSink
) -> None:
    """Credential, file and env: `pollerd check` passes; inline and rejected by the store: it
    fails; neither run prints a secret."""
    creds = tmp_path / "creds"
    creds.mkdir()
    _write(creds / "wc_key", KEY, 0o400)
    secret_file = _write(tmp_path / "wc_secret", SECRET + "\n", 0o600)
    outputs = []
    with WooSim(consumer_key=KEY, consumer_secret=SECRET) as sim:
        config = write_config(tmp_path / "a", sim.url, sink.url)
        text = config.read_text()
        text = text.replace('"env:TEST_WC_KEY"', '"credential:wc_key"')
        config.write_text(text.replace('"env:TEST_WC_SECRET"', f'"file:{secret_file}"'))
        code, output = _check(config, CREDENTIALS_DIRECTORY=str(creds), INVOCATION_ID="abc123")
        outputs.append(output)
        assert code == 0 and "✓ shop" in output, output
        assert "secret env:TEST_HOOK_SECRET is read from the environment under systemd" in output
        assert "env:TEST_WC" not in output  # credential and file: no warning
    with WooSim(consumer_key=KEY, consumer_secret="cs_not_the_configured_one") as other:
        code, output = _check(_inline(write_config(tmp_path / "b", other.url, sink.url)))
        outputs.append(output)
        assert code == 1 and "✗ shop" in output, output
        assert "holds 2 secret(s) written inline" in output
    for output in outputs:
        for value in (KEY, SECRET, HOOK_SECRET):
            assert value not in output


def _inline(config: Path) -> Path:
    text = config.read_text().replace('"env:TEST_WC_KEY"', f'"{KEY}"')
    config.write_text(text.replace('"env:TEST_WC_SECRET"', f'"{SECRET}"'))
    config.chmod(0o644)
    return config
