"""The backfill's fast paths give the very text the plain ones gave: event bodies (orjson for
order events, `json` before), parsed payloads (`payload.loads`), dates (`utc_iso` without
strftime) and IP addresses (a dotted quad without `ipaddress`). Each compares against the
former code, kept here as the reference: a body or a date spelled differently would change an
event's bytes, a number read differently an order."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pollerd.model import Event, normal_ip, utc_iso
from pollerd.sources.payload import loads

T = datetime(2026, 11, 22, 9, 32, 36, 250_000, tzinfo=UTC)

_SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()
_ORDER = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def _reference_body(event: Event) -> str:
    return json.dumps(event.to_json(), ensure_ascii=False, separators=(",", ":"))


@given(order=st.dictionaries(st.text(), _ORDER, max_size=6), reason=st.none() | st.text())
@example(order={"name": '王芳 \u2028\x00\x1f\x7f\ufeff😀 "q" \\'}, reason="x\ny")
@example(order={"big": 2**64, "lone": "\ud800"}, reason=None)  # orjson refuses: json writes it
def test_order_event_bodies_are_the_text_json_wrote(order: dict[str, Any], reason: str) -> None:
    event = Event("order.paid", "s", "shopify", "1", T, T, False, {"id": "1", **order}, reason)
    assert event.body() == _reference_body(event)


def test_alert_bodies_with_floats_keep_json_spelling() -> None:
    """orjson writes 1e-05 as 1e-5: alerts, whose figures are floats, stay with `json`."""
    alert = Event(
        "alert.high_value", "s", "shopify", "1", T, T, False, {"id": "1"},
        alert={"rate": 1e-05, "big": 1e16},
    )  # fmt: skip
    assert alert.body() == _reference_body(alert)
    assert '"rate":1e-05' in alert.body()


ZONES = [UTC, timezone(timedelta(hours=8)), timezone(-timedelta(hours=5, minutes=30))]


def _reference_iso(value: datetime, millis: bool) -> str:
    value = value.astimezone(UTC)
    if millis:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


@given(
    when=st.datetimes(
        min_value=datetime(2, 1, 1),
        max_value=datetime(9998, 12, 31),
        timezones=st.sampled_from(ZONES),
    ),
    millis=st.booleans(),
)  # fmt: skip
@example(when=datetime(999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), millis=True)
def test_utc_iso_is_the_strftime_text(when: datetime, millis: bool) -> None:
    assert utc_iso(when, millis=millis) == _reference_iso(when, millis)


def _reference_ip(text: str) -> str | None:
    if not text.strip():
        return None
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None
    address = getattr(address, "ipv4_mapped", None) or address
    return None if address.is_unspecified or address.is_loopback else str(address)


_OCTETS = st.integers(0, 999).map(str) | st.sampled_from(["00", "01", "010", "٣", "", " 1"])


@given(text=st.lists(_OCTETS, min_size=3, max_size=5).map(".".join) | st.text(max_size=20))
@example(text="0.0.0.0")
@example(text="127.3.2.1")
@example(text="198.51.100.7\n")
@example(text="::ffff:203.0.113.9")
@example(text="010.1.1.1")
def test_normal_ip_is_what_ipaddress_says(text: str) -> None:
    assert normal_ip(text) == _reference_ip(text)


@pytest.mark.parametrize(
    "data",
    [
        b'{"name":"\xe7\x8e\x8b","n":[1,2.5,null,true]}',
        b'\xef\xbb\xbf{"id":1}',  # a BOM a WordPress plugin printed: orjson refuses it
        b'{"name":"\\ud83d"}',  # a lone surrogate escape
        b'{"quantity":18446744073709551616}',  # past 64 bits: orjson reads a float
        b'{"quantity":-9223372036854775809,"id":"5273485869312"}',
        b'{"total":1E400}',
        b'{"total":NaN}',
        '{"text":"str, not bytes"}',
    ],
)
def test_loads_reads_what_json_reads(data: bytes | str) -> None:
    assert repr(loads(data)) == repr(json.loads(data))


@pytest.mark.parametrize("data", [b"", b"<html>", b'{"cut":', b"\xff\xfe{}"])
def test_loads_refuses_what_json_refuses(data: bytes) -> None:
    with pytest.raises(ValueError):
        json.loads(data)
    with pytest.raises(ValueError):
        loads(data)
