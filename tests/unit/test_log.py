"""Logging (issue 5 item 5): every kind of sensitive text is masked in the message, in `extra`,
in tracebacks and in stdlib records; the human, JSON and journald outputs; format selection
under systemd; and the suite-wide log scan of `tests/conftest.py`."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from pollerd import log, secrets
from pollerd.config import load
from pollerd.secrets import resolve
from pollerd_sim.harness import HOOK_SECRET, KEY, SECRET, pollerd, pollerd_env
from pollerd_sim.stream import PEOPLE
from tests import conftest
from tests.support import ROOT

SECRET_VALUE = "s3cr3t-resolved-VALUE-9f8e7d"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Tests here call `log.setup`; afterwards drop its sink and give stdlib logging back."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    yield
    for handler in log._INSTALLED:
        logger.remove(handler)
    log._INSTALLED.clear()
    log.install_redaction()
    root.handlers[:], root.level = saved


@pytest.fixture
def out(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    # Only this test's secrets: values other tests in this worker resolved would mask more.
    monkeypatch.setattr(secrets, "_ALL_SECRETS", set())
    monkeypatch.setattr(secrets, "_VERSION", secrets.registry_version() + 1)
    monkeypatch.setenv("LOG_TEST_SECRET", SECRET_VALUE)
    resolve("env:LOG_TEST_SECRET")
    buffer = io.StringIO()
    log.setup("DEBUG", "human", buffer)
    return buffer


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer."""
    with tempfile.TemporaryDirectory(prefix="plog-") as folder:
        yield Path(folder)


# redaction ----------------------------------------------------------------------------------


def test_known_secret_values_are_masked(out: io.StringIO) -> None:
    logger.bind(detail=f"echo {SECRET_VALUE}").info("request failed: {}", SECRET_VALUE)
    text = out.getvalue()
    assert SECRET_VALUE not in text
    assert "request failed: ****" in text and "detail=echo ****" in text


def test_secret_resolved_after_setup_is_masked(
    out: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger.info("warm the cache")
    late = "late-secret-resolved-abcdef"
    monkeypatch.setenv("LOG_TEST_LATE", late)
    resolve("env:LOG_TEST_LATE")
    logger.info("value {}", late)
    assert late not in out.getvalue() and "value ****" in out.getvalue()


def test_secret_pattern_is_reused_while_secrets_are_unchanged(out: io.StringIO) -> None:
    first = log._SECRETS.pattern()
    assert first is not None and first.search(SECRET_VALUE)
    assert log._SECRETS.pattern() is first


def test_every_secret_of_a_loaded_config_is_masked(
    out: io.StringIO, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inline literals and references of stores and channels, as they would show up in an
    error message or a URL (percent-encoded)."""
    monkeypatch.setenv("LOG_HOOK", "whsec_" + "Q" * 32)
    config = tmp_path / "pollerd.toml"
    config.write_text(
        "[[stores]]\nname = \"acme\"\nplatform = \"woocommerce\"\n"
        "url = \"https://shop.example.com\"\nconsumer_key = \"plain key/with+odd&chars\"\n"
        "consumer_secret = \"another plain value\"\n"
        "[[channels]]\nname = \"hook\"\ntype = \"webhook\"\nurl = \"https://hooks.example.com/x\"\n"
        "secret = \"env:LOG_HOOK\"\n"
    )  # fmt: skip
    config.chmod(0o600)
    load(config)
    logger.error(
        "401 for https://x.example/?k=plain%20key%2Fwith%2Bodd%26chars&s=another+plain+value "
        "(plain key/with+odd&chars, another plain value, whsec_{})",
        "Q" * 32,
    )
    text = out.getvalue()
    for value in ("plain key", "plain%20key", "another plain", "another+plain", "QQQQ"):
        assert value not in text, text


@pytest.mark.parametrize(
    ("text", "hidden", "shown"),
    [
        ("GET https://shop.example.com/wp-json/wc/v3/orders?consumer_key=ck_abc123&"
         "consumer_secret=cs_def456&page=2", ["ck_abc123", "cs_def456"],
         ["consumer_key=****&consumer_secret=****&page=2"]),
        ("oauth_consumer_key=ck_1&oauth_signature=c2lnbmF0dXJl%3D&oauth_nonce=n1",
         ["ck_1", "c2lnbmF0dXJl"], ["oauth_signature=****", "oauth_nonce=n1"]),
        ("https://x.example/cb?access_token=shpat_abc&token=t0k3n&key=k3y",
         ["shpat_abc", "t0k3n", "k3y"], ["access_token=****&token=****&key=****"]),
        ("POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx",
         ["693a91f6"], ["send?key=****"]),
        ("POST https://oapi.dingtalk.com/robot/send?access_token=abc123&timestamp=1&sign=c2ln%3D",
         ["abc123", "c2ln"], ["access_token=****&timestamp=1&sign=****"]),
        ('body {"access_token": "shpat_json", "api_key": "k2", "sign": "s1gn"}',
         ["shpat_json", "k2", "s1gn"], ['"access_token": "****"', '"sign": "****"']),
        ("Authorization: Basic Y2tfMTpjc18y sent", ["Y2tfMTpjc18y"],
         ["Authorization: ****"]),
        ("headers {'authorization': 'Bearer eyJhbGciOi.x.y', 'accept': 'json'}",
         ["eyJhbGciOi"], ["'authorization': '****'", "'accept': 'json'"]),
        ('Authorization: OAuth oauth_consumer_key="ck_9", oauth_signature="sig9"',
         ["ck_9", "sig9"], ["Authorization: ****"]),
        ("X-Shopify-Access-Token: shpat_hdr", ["shpat_hdr"], ["X-Shopify-Access-Token: ****"]),
        ("db postgresql+psycopg://pollerd:pgpass@db.internal/pollerd", ["pgpass"],
         ["postgresql+psycopg://pollerd:****@db.internal/pollerd"]),
        ("clone https://ghp_tokenonly@git.example.com/repo", ["ghp_tokenonly"],
         ["https://****@git.example.com/repo"]),
        ("POST https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/"
         "sendMessage", ["AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"],
         ["https://api.telegram.org/bot****/sendMessage"]),
        ("token 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw given", ["AAHdqTcv"],
         ["token **** given"]),
        ("POST https://discord.com/api/webhooks/1234567890/Zk9-aBc_dEf?wait=true",
         ["Zk9-aBc_dEf"], ["/api/webhooks/1234567890/****?wait=true"]),
        ("POST https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
         ["XXXXXXXX"], ["hooks.slack.com/services/T00000000/B00000000/****"]),
        ("POST https://open.feishu.cn/open-apis/bot/v2/hook/0a1b2c3d-4e5f-6789 -> 200",
         ["0a1b2c3d"], ["/open-apis/bot/v2/hook/**** -> 200"]),
        ("tokens shpat_0123456789abcdef ck_0123456789abcdef01 cs_fedcba9876543210 whsec_MfKQ9r8G==",
         ["shpat_0123", "ck_0123", "cs_fedc", "whsec_MfKQ"],
         ["shpat_****", "ck_****", "cs_****", "whsec_****"]),
        ("customer jane.doe@example.com paid", ["jane.doe@example.com"],
         ["customer j***@example.com paid"]),
        ("phone 13812345678 and +86 138 1234 5678 and +1 415 555 2671",
         ["13812345678", "1234 5678", "555 2671"], ["phone 138****5678 and "]),
        ("call 555-625-1199, (555) 625-1199 or +86 138-1234-5678",
         ["625-1199", "625", "1234-5678"], ["call 555****1199, 555****1199 or 861****5678"]),
        ("event acme-eu:5273485869312:order.paid /orders/5273485869312 order #1001 at "
         "2026-11-22T09:32:36Z total 1234567.89 api 2026-10 on 127.0.0.1:8088", [],
         ["acme-eu:5273485869312:order.paid", "/orders/5273485869312", "#1001",
          "2026-11-22T09:32:36Z", "1234567.89", "api 2026-10", "127.0.0.1:8088"]),
        ("keyset pagination, monkey=3, design=4, 12 orders", [],
         ["keyset pagination, monkey=3, design=4, 12"]),
    ],
)  # fmt: skip
def test_redaction(out: io.StringIO, text: str, hidden: list[str], shown: list[str]) -> None:
    logger.info(text)
    logger.bind(payload={"nested": [text]}).debug("in extra")
    output = out.getvalue()
    for part in hidden:
        assert part not in output
    for part in shown:
        assert output.count(part) >= 2, (part, output)  # once in the message, once in extra
    assert log.redact(log.redact(text)) == log.redact(text)


def test_fixture_customers_are_masked(out: io.StringIO) -> None:
    for first, last, email, phone, _currency in PEOPLE:
        logger.info("order by {} {} <{}> tel {}", first, last, email, phone)
    text = out.getvalue()
    for _first, _last, email, phone, _currency in PEOPLE:
        assert email not in text
        assert not phone or phone not in text


def test_traceback_is_redacted_and_has_no_locals(out: io.StringIO) -> None:
    def fetch() -> None:
        password = "hunter2-local-variable"  # a local diagnose=True would print
        raise RuntimeError(f"401 for https://shop/?consumer_secret=cs_tb&x={len(password)}")

    try:
        fetch()
    except RuntimeError:
        logger.exception("poll failed")
    output = out.getvalue()
    assert "poll failed" in output and "Traceback (most recent call last)" in output
    assert "RuntimeError: 401 for https://shop/?consumer_secret=****" in output
    assert "cs_tb" not in output and "hunter2-local-variable" not in output


def test_stdlib_logging_is_routed_and_redacted(out: io.StringIO) -> None:
    logging.getLogger("apscheduler.scheduler").warning("job token=%s missed", "tok_std")
    output = out.getvalue()
    assert "job token=**** missed" in output and "logger=apscheduler.scheduler" in output
    assert "tok_std" not in output


def test_level_filters(out: io.StringIO) -> None:
    buffer = io.StringIO()
    log.setup("warning", "human", buffer)
    logger.info("quiet")
    logger.warning("loud")
    assert "quiet" not in buffer.getvalue() and "WARNING  | loud" in buffer.getvalue()


def test_setup_replaces_its_own_sink_and_keeps_others() -> None:
    seen: list[str] = []
    other = logger.add(lambda m: seen.append(m.record["message"]), level="INFO")
    try:
        first, second = io.StringIO(), io.StringIO()
        log.setup("INFO", "human", first)
        log.setup("INFO", "human", second)
        logger.info("once")
    finally:
        logger.remove(other)
    assert first.getvalue() == "" and second.getvalue().count("once") == 1
    assert seen == ["once"]


# JSON lines ----------------------------------------------------------------------------------


def test_json_lines_are_small_objects() -> None:
    buffer = io.StringIO()
    assert log.setup("INFO", "json", buffer) == "json"
    logger.bind(event_id="acme:1:order.paid", channel="ops", store="acme").info(
        "已发送 to {}", "bob@example.com"
    )
    logger.debug("below the level")
    try:
        raise ValueError("key=k_json")
    except ValueError:
        logger.bind(store="acme").exception("oops")
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert list(first) == ["ts", "level", "msg", "store", "channel", "event_id"]
    assert first["ts"].endswith("Z") and len(first["ts"]) == len("2026-11-22T09:32:36.123Z")
    assert first["level"] == "INFO" and first["msg"] == "已发送 to b***@example.com"
    assert (first["store"], first["channel"], first["event_id"]) == (
        "acme",
        "ops",
        "acme:1:order.paid",
    )
    assert "已发送" in lines[0]  # UTF-8 as is, not \\u escapes
    assert second["level"] == "ERROR" and second["msg"] == "oops"
    assert "ValueError: key=****" in second["exc"] and "k_json" not in buffer.getvalue()


# journald -------------------------------------------------------------------------------------


def parse_native(data: bytes) -> dict[str, str]:
    """Decode one datagram of the journal native protocol (systemd
    docs/JOURNAL_NATIVE_PROTOCOL.md): `NAME=value\\n`, or `NAME\\n` + little-endian u64 size
    + value + `\\n` for values that contain a newline. Strict: anything else fails."""
    fields: dict[str, str] = {}
    at = 0
    while at < len(data):
        end = data.index(b"\n", at)
        line = data[at:end]
        if b"=" in line:
            name, _, value = line.partition(b"=")
            at = end + 1
        else:
            name = line
            (size,) = struct.unpack("<Q", data[end + 1 : end + 9])
            value = data[end + 9 : end + 9 + size]
            assert data[end + 9 + size : end + 10 + size] == b"\n", "missing terminator"
            at = end + 10 + size
        assert name and name == name.upper() and not name.startswith(b"_"), name
        fields[name.decode()] = value.decode()
    return fields


@pytest.fixture
def journal(short_dir: Path) -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(short_dir / "journal.sock"))
    server.settimeout(5)
    yield server
    server.close()


def test_journal_native_protocol_fields(journal: socket.socket) -> None:
    fallback = io.StringIO()
    path = journal.getsockname()
    assert log.setup("DEBUG", "journal", fallback, journal_socket=path) == "journal"
    line = sys._getframe().f_lineno + 1
    logger.bind(store="acme", channel="ops", event_id="acme:7:order.paid", attempt=2).warning(
        "first line\nsecond line for jane@example.com"
    )
    raw = journal.recv(65536)
    fields = parse_native(raw)
    assert b"MESSAGE\n" + struct.pack("<Q", len(fields["MESSAGE"].encode())) in raw
    assert fields == {
        "MESSAGE": "first line\nsecond line for j***@example.com",
        "PRIORITY": "4",
        "SYSLOG_IDENTIFIER": "pollerd",
        "CODE_FILE": __file__,
        "CODE_LINE": str(line),
        "CODE_FUNC": "test_journal_native_protocol_fields",
        "STORE": "acme",
        "CHANNEL": "ops",
        "EVENT_ID": "acme:7:order.paid",
        "ATTEMPT": "2",
    }
    try:
        raise OSError("connect to https://u:pw@shop.example.com failed")
    except OSError:
        logger.exception("store acme: poll failed")
    fields = parse_native(journal.recv(65536))
    assert fields["PRIORITY"] == "3"
    assert fields["MESSAGE"].startswith("store acme: poll failed\nTraceback (most recent call")
    assert "OSError: connect to https://u:****@shop.example.com failed" in fields["MESSAGE"]
    logger.debug("d")
    logger.info("i")
    assert [parse_native(journal.recv(65536))["PRIORITY"] for _ in range(2)] == ["7", "6"]
    assert fallback.getvalue() == ""


def test_journal_record_too_big_for_a_datagram_goes_in_a_sealed_memfd(
    journal: socket.socket,
) -> None:
    import fcntl

    log.setup("INFO", "journal", io.StringIO(), journal_socket=journal.getsockname())
    body = "x" * 400_000  # above the 212,992-byte default socket send buffer
    logger.info(body)
    data, fds, _flags, _addr = socket.recv_fds(journal, 1024, 1)
    assert data == b"" and len(fds) == 1
    try:
        seals = fcntl.fcntl(fds[0], fcntl.F_GET_SEALS)
        assert seals & fcntl.F_SEAL_WRITE and seals & fcntl.F_SEAL_SEAL
        with os.fdopen(os.dup(fds[0]), "rb") as memfd:
            memfd.seek(0)
            fields = parse_native(memfd.read())
    finally:
        os.close(fds[0])
    assert fields["MESSAGE"] == body and fields["PRIORITY"] == "6"


def test_journal_without_a_socket_writes_priority_prefixes(short_dir: Path) -> None:
    buffer = io.StringIO()
    missing = str(short_dir / "no-journal.sock")
    assert log.setup("INFO", "journal", buffer, journal_socket=missing) == "journal"
    logger.bind(store="acme").warning("slow store")
    try:
        raise KeyError("boom")
    except KeyError:
        logger.exception("failed")
    lines = buffer.getvalue().splitlines()
    assert lines[0] == "<4>slow store | store=acme"
    assert lines[1] == "<3>failed" and lines[2] == "<3>Traceback (most recent call last):"
    assert lines[-1] == "<3>KeyError: 'boom'"
    assert all(line.startswith("<3>") for line in lines[1:])


def test_journal_going_away_falls_back_to_priority_prefixes(journal: socket.socket) -> None:
    buffer = io.StringIO()
    path = journal.getsockname()
    log.setup("INFO", "journal", buffer, journal_socket=path)
    logger.info("to the journal")
    assert parse_native(journal.recv(65536))["MESSAGE"] == "to the journal"
    journal.close()
    os.unlink(path)  # journald restarting
    logger.error("while journald is away")
    assert buffer.getvalue() == "<3>while journald is away\n"


def test_journal_stream_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with (tmp_path / "stderr").open("w") as stream, (tmp_path / "other").open("w") as other:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        assert log.is_journal_stream(stream) and log.choose_format("auto", stream) == "journal"
        assert not log.is_journal_stream(other)  # inherited variable, stderr redirected
        assert log.choose_format("auto", other) == "human"
        assert log.choose_format("json", stream) == "json"
        assert not log.is_journal_stream(io.StringIO())
        for garbage in ("", "1:", ":2", "a:b", "12"):
            monkeypatch.setenv("JOURNAL_STREAM", garbage)
            assert not log.is_journal_stream(stream)
    with pytest.raises(ValueError, match="not one of auto, human, json, journal"):
        log.setup("INFO", "xml")


_CHILD = """
import sys
from loguru import logger
from pollerd import log, secrets
log.JOURNAL_SOCKET = sys.argv[1]
print(log.setup("INFO", "auto"), flush=True)
logger.bind(store="acme").warning("hello journal")
"""


def test_auto_under_systemd_speaks_the_native_protocol(
    journal: socket.socket, tmp_path: Path
) -> None:
    """A real process whose stderr is the "journal stream" systemd set up (`JOURNAL_STREAM`
    names its device and inode) picks the native protocol on its own; with stderr redirected
    elsewhere (the variable inherited) it writes human lines."""
    stderr_file = tmp_path / "stderr"
    with stderr_file.open("w") as stderr:
        info = os.fstat(stderr.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        command = [sys.executable, "-c", _CHILD, journal.getsockname()]
        result = subprocess.run(
            command, env=env, stderr=stderr, stdout=subprocess.PIPE, text=True, timeout=60
        )
    assert result.returncode == 0 and result.stdout == "journal\n"
    fields = parse_native(journal.recv(65536))
    assert (fields["MESSAGE"], fields["STORE"], fields["PRIORITY"]) == (
        "hello journal",
        "acme",
        "4",
    )
    assert stderr_file.read_text() == ""
    env["JOURNAL_STREAM"] = f"{info.st_dev}:{info.st_ino + 1}"
    redirected = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert redirected.stdout == "human\n"
    assert "WARNING  | hello journal | store=acme" in redirected.stderr


def test_cli_log_format_option(tmp_path: Path) -> None:
    """`--log-format json` and `--log-format journal` (no journald socket on a test machine:
    priority prefixes) through a real `pollerd check` whose config warning is logged."""
    config = tmp_path / "pollerd.toml"
    config.write_text(
        "[[stores]]\nname = \"shop\"\nplatform = \"woocommerce\"\nurl = \"http://127.0.0.1:9\"\n"
        f"consumer_key = \"{KEY}\"\nconsumer_secret = \"{SECRET}\"\ntimeout = \"1s\"\n"
    )  # fmt: skip
    config.chmod(0o644)
    as_json = pollerd("--log-format", "json", "check", "-c", str(config))
    entry = json.loads(as_json.stderr.splitlines()[0])
    assert entry["level"] == "WARNING" and "written inline" in entry["msg"], as_json.stderr
    outputs = [as_json.stdout + as_json.stderr]
    if not os.path.exists(log.JOURNAL_SOCKET):
        prefixed = pollerd("--log-format", "journal", "check", "-c", str(config))
        assert prefixed.stderr.startswith("<4>config ") and "written inline" in prefixed.stderr
        outputs.append(prefixed.stdout + prefixed.stderr)
    for output in outputs:
        assert SECRET not in output and KEY not in output


# the suite-wide scan (tests/conftest.py) ----------------------------------------------------


def test_this_process_is_being_captured(request: pytest.FixtureRequest) -> None:
    """The capture is live: a log line and a `pollerd` subprocess's output of this very test
    are in this worker's file, under this test's marker."""
    capture = conftest._CAPTURE
    assert capture is not None
    marker = f"capture-marker-{os.getpid()}"
    logger.info(marker)
    result = pollerd("--log-format", "xml", "status", env=pollerd_env())
    assert result.returncode == 2
    text = capture.path.read_text()
    mine = text[text.rindex(f"### {request.node.nodeid}\n") :]
    assert f"| {marker}" in mine
    assert f"### {request.node.nodeid} :: pollerd --log-format xml status" in mine
    assert "--log-format must be auto, human, json or journal, not 'xml'" in mine


def test_scan_names_file_line_test_and_source_never_the_value(tmp_path: Path) -> None:
    needles = {"cs_test_abcdefghijkl": "harness.SECRET", "+86 138 1234 5678": "PEOPLE"}
    (tmp_path / "gw0.log").write_text(
        "### tests/a.py::test_one\nINFO fine 138****5678\nERROR leaked cs_test_abcdefghijkl\n"
        "### tests/a.py::test_two\nphone 8613812345678 raw\nnot a phone 186138123456789\n"
    )
    lines, leaks = conftest.scan(tmp_path, needles)
    assert lines == 6
    assert leaks == [
        f"{tmp_path / 'gw0.log'}:3: harness.SECRET appears (test tests/a.py::test_one)",
        f"{tmp_path / 'gw0.log'}:5: PEOPLE appears (test tests/a.py::test_two)",
    ]


def test_needles_are_collected_from_the_sims() -> None:
    needles = conftest.fixture_needles()
    from pollerd_sim import chat

    sim_tokens = {v for k, v in vars(chat).items() if k.startswith("SIM_")}
    assert {KEY, SECRET, HOOK_SECRET} | sim_tokens <= set(needles)
    assert {email for *_, email, _phone, _c in PEOPLE} <= set(needles)
    assert {phone for *_, phone, _c in PEOPLE if phone} <= set(needles)
    assert "ada@example.test" in needles and "+15550100" in needles  # create_order defaults
    assert not any(value.startswith("20") and len(value) <= 10 for value in needles)  # dates


_LEAKY = """
from loguru import logger
from pollerd_sim.harness import SECRET
from pollerd_sim.stream import PEOPLE

def test_fine():
    logger.info("customer {}", PEOPLE[3][2])  # masked by the redaction patcher

def test_leaks():
    logger.configure(patcher=lambda record: None)  # as if a sink bypassed the redaction
    logger.info("token " + SECRET)
"""


@pytest.mark.parametrize("workers", [["-n", "2"], ["-p", "no:xdist"]])
def test_the_scan_fails_a_run_that_logged_a_secret(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    """A nested pytest run with this conftest: one test logs the harness SECRET past the
    redactor. The run's tests pass, the scan fails it and names file, line, test and source."""
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    # the nested run is outside the checkout: `tests` is not importable there
    conftest = conftest.replace("from tests.support import ROOT", f"ROOT = Path({str(ROOT)!r})")
    pytester.makeconftest(conftest)
    pytester.makepyfile(test_leaky=_LEAKY)
    result = pytester.runpytest_subprocess(*workers, "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*log scan: secrets or customer data in the logs*",
            "*.log:*: pollerd_sim.harness.SECRET appears (test test_leaky.py::test_leaks)",
        ]
    )
    assert "2 passed" in result.stdout.str()
    assert SECRET not in result.stdout.str()  # the report names the source, not the value
    assert "zhang.wei@example.test" not in result.stdout.str()


def test_an_uncaught_error_is_one_json_record_when_json_was_asked_for() -> None:
    """Issue 12 item 2: with `--log-format json`, even an error nothing caught is JSON."""
    code = (
        "from pollerd.log import setup\n"
        "setup(fmt='json')\n"
        "raise RuntimeError('boom at https://x.example/?consumer_secret=cs_live_123456')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    record = json.loads(lines[0])
    assert record["level"] == "CRITICAL" and "RuntimeError: boom" in record["msg"]
    assert "Traceback" in record["exc"] and "cs_live_123456" not in result.stderr


def test_a_failing_command_says_its_one_line_as_json() -> None:
    from pollerd.log import error_line

    record = json.loads(error_line("database /x.db: the disk is full", 1))
    assert record["level"] == "ERROR" and record["exit_code"] == 1
    assert record["msg"] == "database /x.db: the disk is full"
