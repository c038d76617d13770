"""Log redaction: every kind of sensitive text is masked in the message, in `extra`, in
tracebacks and in stdlib records, for both the human and the JSON format."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest
from loguru import logger

from pollerd import log
from pollerd.secrets import resolve

SECRET = "s3cr3t-resolved-VALUE-9f8e7d"


@pytest.fixture
def out(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    monkeypatch.setenv("LOG_TEST_SECRET", SECRET)
    resolve("env:LOG_TEST_SECRET")
    buffer = io.StringIO()
    log.setup("DEBUG", "human", buffer)
    yield buffer
    logger.remove()
    logger.configure(patcher=None)
    logger.add(sys.stderr)  # loguru's own default, for whatever runs next in this process
    root.handlers[:], root.level = saved


def test_known_secret_values_are_masked(out: io.StringIO) -> None:
    logger.bind(detail=f"echo {SECRET}").info("request failed: {}", SECRET)
    text = out.getvalue()
    assert SECRET not in text
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
    assert first is not None and first.search(SECRET)
    assert log._SECRETS.pattern() is first


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
        ('body {"access_token": "shpat_json", "api_key": "k2"}', ["shpat_json", "k2"],
         ['"access_token": "****"']),
        ("Authorization: Basic Y2tfMTpjc18y sent", ["Y2tfMTpjc18y"],
         ["Authorization: ****"]),
        ("headers {'authorization': 'Bearer eyJhbGciOi.x.y', 'accept': 'json'}",
         ["eyJhbGciOi"], ["'authorization': '****'", "'accept': 'json'"]),
        ('Authorization: OAuth oauth_consumer_key="ck_9", oauth_signature="sig9"',
         ["ck_9", "sig9"], ["Authorization: ****"]),
        ("X-Shopify-Access-Token: shpat_hdr", ["shpat_hdr"], ["X-Shopify-Access-Token: ****"]),
        ("db postgresql+psycopg://pollerd:pgpass@db.internal/pollerd", ["pgpass"],
         ["postgresql+psycopg://pollerd:****@db.internal/pollerd"]),
        ("customer jane.doe@example.com paid", ["jane.doe@example.com"],
         ["customer j***@example.com paid"]),
        ("phone 13812345678 and +86 138 1234 5678 and +1 415 555 2671",
         ["13812345678", "1234 5678", "555 2671"], ["phone 138****5678 and "]),
        ("event acme-eu:5273485869312:order.paid /orders/5273485869312 order #1001 at "
         "2026-11-22T09:32:36Z total 1234567.89", [],
         ["acme-eu:5273485869312:order.paid", "/orders/5273485869312", "#1001",
          "2026-11-22T09:32:36Z", "1234567.89"]),
        ("keyset pagination, monkey=3, 12 orders", [], ["keyset pagination, monkey=3, 12"]),
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


def test_json_lines(out: io.StringIO) -> None:
    buffer = io.StringIO()
    log.setup("INFO", "json", buffer)
    logger.bind(store="acme-eu", email="bob@example.com").info("paid by {}", SECRET)
    logger.debug("below the level")
    try:
        raise ValueError("key=k_json")
    except ValueError:
        logger.exception("oops")
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line)["record"] for line in lines)
    assert first["message"] == "paid by ****"
    assert first["extra"] == {"store": "acme-eu", "email": "b***@example.com"}
    assert "key=****" in second["extra"]["traceback"]
    assert SECRET not in buffer.getvalue() and "k_json" not in buffer.getvalue()


def test_level_filters(out: io.StringIO) -> None:
    buffer = io.StringIO()
    log.setup("warning", "human", buffer)
    logger.info("quiet")
    logger.warning("loud")
    assert "quiet" not in buffer.getvalue() and "WARNING  | loud" in buffer.getvalue()
