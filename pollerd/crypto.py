"""Customer PII sealed at rest with AES-256-GCM (GDPR Art. 32), keys that rotate.

A sealed value is `P1 | key id (1 byte) | nonce (12 random bytes) | ciphertext + 16-byte tag`.
The associated data binds it to its place, `pollerd/1|table|column|row`, so a blob copied into
another order's row or another column does not open (InvalidTag) instead of showing the wrong
customer. Nonces are random 96-bit values (NIST SP 800-38D §8.3: at most 2³² seals per key, far
beyond a store's lifetime of orders at 72 h retention; rotate with `pollerd keygen` + `rekey`).

The key ring is the `pii_key` secret: one or more `ID:BASE64` keys separated by spaces or
commas. The FIRST seals, every one opens: to rotate, put the new key first, keep the old one
until `pollerd rekey` reports nothing left under it, then drop it.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pollerd.errors import PollerdError

MAGIC = b"P1"
NONCE = 12
_KEY_BYTES = 32
_SPLIT = re.compile(r"[\s,]+")


class CryptoError(PollerdError):
    """A key ring that cannot be used, or a sealed value that does not open (exit 1). Messages
    never contain key material or plaintext."""


def generate(key_id: int = 1) -> str:
    """A new key as `pollerd keygen` prints it: `ID:BASE64` (32 random bytes)."""
    if not 1 <= key_id <= 255:
        raise CryptoError(f"key id {key_id} is out of range (1 to 255)")
    key = AESGCM.generate_key(bit_length=256)
    return f"{key_id}:{base64.b64encode(key).decode('ascii')}"


@dataclass(frozen=True)
class KeyRing:
    """Keys by id; `current` seals. Build it with `parse` from the `pii_key` secret."""

    keys: dict[int, AESGCM]
    current: int

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        entries = [entry for entry in _SPLIT.split(text.strip()) if entry]
        if not entries:
            raise CryptoError("pii_key is empty: create a key with `pollerd keygen`")
        keys: dict[int, AESGCM] = {}
        first: int | None = None
        for number, entry in enumerate(entries, 1):
            key_id, raw = _entry(entry, number)
            if key_id in keys:
                raise CryptoError(f"pii_key: key id {key_id} appears twice; ids must differ")
            keys[key_id] = AESGCM(raw)
            first = key_id if first is None else first
        assert first is not None
        return cls(keys, first)

    def __repr__(self) -> str:
        # Ids only: a ring that ends up in a log line or a traceback shows no key material.
        return f"KeyRing(current={self.current}, ids={sorted(self.keys)})"

    def seal(self, plaintext: str, *, table: str, column: str, row: str) -> bytes:
        nonce = os.urandom(NONCE)
        aad = associated(table, column, row)
        sealed = self.keys[self.current].encrypt(nonce, plaintext.encode("utf-8"), aad)
        return MAGIC + bytes([self.current]) + nonce + sealed

    def open(self, blob: bytes, *, table: str, column: str, row: str) -> str:
        where = f"{table}.{column} of {row}"
        if len(blob) < len(MAGIC) + 1 + NONCE + 16 or not blob.startswith(MAGIC):
            raise CryptoError(f"{where} is not a sealed value")
        key_id = blob[len(MAGIC)]
        key = self.keys.get(key_id)
        if key is None:
            raise CryptoError(
                f"{where} is sealed with key id {key_id}, which pii_key no longer holds: "
                "add that key back (after the new one) and run `pollerd rekey`"
            )
        nonce = blob[len(MAGIC) + 1 : len(MAGIC) + 1 + NONCE]
        try:
            plain = key.decrypt(
                nonce, blob[len(MAGIC) + 1 + NONCE :], associated(table, column, row)
            )
        except InvalidTag:
            raise CryptoError(
                f"{where} does not open: wrong key for id {key_id}, or the value was altered "
                "or moved from another row"
            ) from None
        return plain.decode("utf-8")

    @staticmethod
    def key_id(blob: bytes) -> int | None:
        """The id of the key that sealed `blob`, None when it is not a sealed value."""
        return blob[len(MAGIC)] if blob.startswith(MAGIC) and len(blob) > len(MAGIC) else None


def associated(table: str, column: str, row: str) -> bytes:
    return f"pollerd/1|{table}|{column}|{row}".encode()


def derive(text: str, info: bytes) -> bytes:
    """A 32-byte key for another purpose, named by `info`, derived by HKDF-SHA256 from the
    current (first) key of the `pii_key` ring `text`: never the sealing key itself, and a new
    current key derives a new one."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    entries = [entry for entry in _SPLIT.split(text.strip()) if entry]
    if not entries:
        raise CryptoError("pii_key is empty: create a key with `pollerd keygen`")
    _, raw = _entry(entries[0], 1)
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(raw)


def _entry(entry: str, number: int) -> tuple[int, bytes]:
    """(`id`, key bytes) of one `ID:BASE64` entry; the error says which entry, never its value."""
    key_id_text, sep, encoded = entry.partition(":")
    fix = "each key is ID:BASE64 as `pollerd keygen` prints it"
    if not sep or not key_id_text.isdigit() or not 1 <= int(key_id_text) <= 255:
        raise CryptoError(f"pii_key: key {number} has no id from 1 to 255 ({fix})")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError(f"pii_key: key {number} is not base64 ({fix})") from None
    if len(raw) != _KEY_BYTES:
        raise CryptoError(
            f"pii_key: key {number} is {len(raw)} bytes, AES-256 needs {_KEY_BYTES} ({fix})"
        )
    return int(key_id_text), raw


class SealedSpool:
    """A temporary file whose bytes on disk are AES-256-GCM ciphertext under a key that only
    this object holds (never written anywhere). A Shopify bulk export is spooled to disk before
    it is committed, customers' emails and phones included; with this, what a crash, a disk
    image or another process could read is noise, with or without `pii_key`.

    Each `write` is one sealed record (`length | ciphertext+tag`) with a counter nonce, unique
    under the spool's one key; `lines()` gives the plaintext back, line by line, as iterating
    a binary file would (each line with its b"\\n")."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()/__exit__
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self._records = 0

    def write(self, data: bytes) -> int:
        if not data:
            return 0
        nonce = self._records.to_bytes(NONCE, "big")
        self._records += 1
        sealed = self._aead.encrypt(nonce, data, None)
        self._file.write(len(sealed).to_bytes(4, "big") + sealed)
        return len(data)

    def lines(self) -> Iterator[bytes]:
        self._file.seek(0)
        rest = b""
        for index in range(self._records):
            size = int.from_bytes(self._file.read(4), "big")
            nonce = index.to_bytes(NONCE, "big")
            rest += self._aead.decrypt(nonce, self._file.read(size), None)
            *complete, rest = rest.split(b"\n")
            for line in complete:
                yield line + b"\n"
        if rest:
            yield rest

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
