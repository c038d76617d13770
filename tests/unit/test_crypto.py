"""AES-256-GCM sealing: round trip, binding to the row, rotation, and errors that name the
problem without key material."""

from __future__ import annotations

import base64

import pytest

from pollerd.crypto import MAGIC, CryptoError, KeyRing, generate

FIXED = base64.b64encode(bytes(range(32))).decode()  # parameters must not vary per worker
PLACE = {"table": "orders", "column": "customer_email", "row": "acme:1001"}


def test_round_trip_and_format() -> None:
    ring = KeyRing.parse(generate(1))
    blob = ring.seal("王芳 <wang.fang@example.com> +86 138 0013 8000", **PLACE)
    assert blob.startswith(MAGIC) and KeyRing.key_id(blob) == 1
    assert b"wang.fang" not in blob and "王芳".encode() not in blob
    assert ring.open(blob, **PLACE) == "王芳 <wang.fang@example.com> +86 138 0013 8000"
    # 2 magic + 1 id + 12 nonce + plaintext + 16 tag:
    assert len(ring.seal("x@example.com", **PLACE)) == 2 + 1 + 12 + 13 + 16


def test_the_same_value_seals_differently_each_time() -> None:
    ring = KeyRing.parse(generate())
    assert ring.seal("a", **PLACE) != ring.seal("a", **PLACE)


@pytest.mark.parametrize(
    "moved",
    [
        {**PLACE, "row": "acme:1002"},
        {**PLACE, "column": "customer_phone"},
        {**PLACE, "table": "events"},
    ],
)
def test_a_value_moved_to_another_place_does_not_open(moved: dict[str, str]) -> None:
    ring = KeyRing.parse(generate())
    blob = ring.seal("jane@example.com", **PLACE)
    with pytest.raises(CryptoError, match="does not open") as err:
        ring.open(blob, **moved)
    assert "jane" not in str(err.value)


def test_a_tampered_value_does_not_open() -> None:
    ring = KeyRing.parse(generate())
    blob = bytearray(ring.seal("jane@example.com", **PLACE))
    blob[-1] ^= 1
    with pytest.raises(CryptoError, match="altered"):
        ring.open(bytes(blob), **PLACE)


def test_rotation_first_key_seals_all_keys_open() -> None:
    old, new = generate(1), generate(2)
    before = KeyRing.parse(old).seal("jane@example.com", **PLACE)
    ring = KeyRing.parse(f"{new}, {old}")
    assert ring.open(before, **PLACE) == "jane@example.com"
    assert KeyRing.key_id(ring.seal("x", **PLACE)) == 2
    dropped = KeyRing.parse(new)
    with pytest.raises(CryptoError, match="key id 1, which pii_key no longer holds"):
        dropped.open(before, **PLACE)


def test_a_wrong_key_under_the_same_id_does_not_open() -> None:
    blob = KeyRing.parse(generate(1)).seal("jane@example.com", **PLACE)
    with pytest.raises(CryptoError, match="wrong key"):
        KeyRing.parse(generate(1)).open(blob, **PLACE)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("abc", "key 1 has no id"),
        ("0:" + base64.b64encode(b"k" * 32).decode(), "key 1 has no id"),
        ("256:" + base64.b64encode(b"k" * 32).decode(), "key 1 has no id"),
        ("1:not base64!", "key 1 is not base64"),
        ("1:" + base64.b64encode(b"k" * 16).decode(), "key 1 is 16 bytes, AES-256 needs 32"),
        (f"3:{FIXED} 3:{FIXED}", "key id 3 appears twice"),
    ],
)
def test_bad_key_rings_name_the_problem_not_the_key(text: str, problem: str) -> None:
    with pytest.raises(CryptoError, match=problem) as err:
        KeyRing.parse(text)
    secret = text.partition(":")[2].split()[0] if ":" in text else ""
    assert len(secret) < 16 or secret not in str(err.value)


def test_not_a_sealed_value() -> None:
    ring = KeyRing.parse(generate())
    with pytest.raises(CryptoError, match="not a sealed value"):
        ring.open(b"jane@example.com", **PLACE)
    assert KeyRing.key_id(b"plain") is None


def test_generate_refuses_bad_ids() -> None:
    with pytest.raises(CryptoError):
        generate(0)


def test_a_sealed_spool_gives_back_lines_and_keeps_only_ciphertext_on_disk() -> None:
    from pollerd.crypto import SealedSpool

    text = b"".join(
        b'{"id":"gid://shopify/Order/%d","email":"jane%d@example.com"}\n' % (n, n)
        for n in range(500)
    )
    with SealedSpool() as spool:
        # Chunks that split lines anywhere, as a streamed download does; an empty one too.
        for start in range(0, len(text), 777):
            spool.write(text[start : start + 777])
        spool.write(b"")
        spool.write(b'{"last":"no newline"}')
        spool._file.seek(0)
        on_disk = spool._file.read()
        lines = list(spool.lines())
    assert b"example.com" not in on_disk and b"gid://" not in on_disk
    assert b"".join(lines) == text + b'{"last":"no newline"}'
    assert lines[0].endswith(b"\n") and len(lines) == 501
